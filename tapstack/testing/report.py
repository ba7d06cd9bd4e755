"""Reports of a scenario run for CI: JUnit XML and JSON, from plain results.

    junit_xml(results, file_errors, seconds) -> str     one <testcase> per scenario and transport
    json_report(results, file_errors, seconds) -> dict

A file that could not be loaded is an <error> testcase named after the file (so CI shows
it among the failures), a scenario whose transport could not start is an <error>, a step
that failed a <failure> whose text is the report a person reads.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET

from tapstack.testing.runner import ScenarioResult, exchange_lines
from tapstack.testing.yamlfile import ScenarioError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NOTHING = 0, 1, 2, 3


def exit_code(results: list[ScenarioResult], file_errors: list[ScenarioError]) -> int:
    """0 all passed, 1 a scenario failed, 2 a file could not be loaded, 3 nothing ran."""
    if file_errors:
        return EXIT_USAGE
    if not results:
        return EXIT_NOTHING
    return EXIT_OK if all(r.ok for r in results) else EXIT_FAILED


def case_name(result: ScenarioResult) -> str:
    return f"{result.scenario.name} [{result.transport}]"


def junit_xml(results: list[ScenarioResult], file_errors: list[ScenarioError], seconds: float) -> str:
    failures = sum(1 for r in results if not r.ok and not r.error)
    errors = sum(1 for r in results if r.error) + len({e.path for e in file_errors})
    suites = ET.Element("testsuites", name="tapstack scenarios", tests=str(len(results) + len({e.path for e in file_errors})),
                        failures=str(failures), errors=str(errors), time=f"{seconds:.3f}")
    suite = ET.SubElement(suites, "testsuite", name="tapstack scenarios", tests=suites.get("tests"),
                          failures=str(failures), errors=str(errors), skipped="0", time=f"{seconds:.3f}")
    by_file: dict[str, list[ScenarioError]] = {}
    for e in file_errors:
        by_file.setdefault(e.path, []).append(e)
    for path, errs in by_file.items():
        case = ET.SubElement(suite, "testcase", classname=path, name="(file)", time="0", file=path)
        error = ET.SubElement(case, "error", message=f"{len(errs)} error(s) in the file", type="ScenarioError")
        error.text = "\n".join(str(ScenarioError(e.path, e.line, e.message)) for e in errs)
    for r in results:
        case = ET.SubElement(suite, "testcase", classname=str(r.scenario.path), name=case_name(r),
                             time=f"{r.seconds:.3f}", file=str(r.scenario.path))
        bad = r.failure
        if r.error:
            ET.SubElement(case, "error", message=r.error, type="TransportError").text = r.report()
        elif bad is not None:
            first = bad.message.splitlines()[0] if bad.message else "failed"
            failure = ET.SubElement(case, "failure", message=f"line {bad.step.line}: {first}", type="StepFailed")
            failure.text = r.report()
    ET.indent(suites)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"


def json_report(results: list[ScenarioResult], file_errors: list[ScenarioError], seconds: float) -> dict:
    def one(r: ScenarioResult) -> dict:
        doc = {"scenario": r.scenario.name, "file": str(r.scenario.path), "transport": r.transport,
               "ok": r.ok, "seconds": round(r.seconds, 3), "steps": len(r.scenario.steps),
               "steps_run": len(r.steps)}
        bad = r.failure
        if r.error:
            doc["error"] = r.error
        elif bad is not None:
            doc["failure"] = {"line": bad.step.line, "step": bad.step.action, "source": bad.step.source,
                              "message": bad.message, "report": r.report(),
                              "apdus": [{"command": c[3:], "response": a[3:]} for c, a in
                                        (exchange_lines(x) for x in bad.exchanges)]}
        return doc

    passed = sum(1 for r in results if r.ok)
    return {"passed": passed, "failed": len(results) - passed, "file_errors": len(file_errors),
            "exit_code": exit_code(results, file_errors), "seconds": round(seconds, 3),
            "results": [one(r) for r in results],
            "errors": [{"file": e.path, "line": e.line, "message": e.message} for e in file_errors]}
