"""docs/testing.md, held true: a new user's session in an empty directory, run as the document
tells it, every example over all three transports.

The document is read in order. A ```yaml or ```python block after a line ending in
"`NAME`:" is written to NAME; a ```console block runs its `$` commands (tapstack in-process,
pytest in-process through pytester, `... &` as a background process, `kill %N`) and compares
what they print, times aside ("..." in a line stands for anything). Comments
`<!-- doc-test: edit FILE "OLD" "NEW" -->` (the last OLD), `restore FILE` and `run COMMAND`
do what the prose asks the reader to do.
"""
from __future__ import annotations

import ast
import re
import shlex
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from tapstack.cli import main
from wallet.pcscd import free_ports

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "testing.md"
FILE_LINE = re.compile(r"`([\w.-]+\.(?:yaml|py))`[^`]*:\s*$")
DIRECTIVE = re.compile(r"<!-- doc-test: (.*) -->")
EDIT = re.compile(r'(\S+) ("(?:[^"\\]|\\.)*") ("(?:[^"\\]|\\.)*")')


@dataclass
class Block:
    kind: str  # file, console, edit, restore, run
    text: str
    name: str = ""
    line: int = 0


def doc_blocks(text: str) -> list[Block]:
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        line = lines[i]
        directive = DIRECTIVE.fullmatch(line.strip())
        if directive:
            kind, _, rest = directive.group(1).partition(" ")
            blocks.append(Block(kind, rest, line=i + 1))
        elif line.startswith("```"):
            lang, start = line[3:].strip(), i
            body = []
            i += 1
            while not lines[i].startswith("```"):
                body.append(lines[i])
                i += 1
            before = next((lines[j] for j in range(start - 1, -1, -1) if lines[j].strip()), "")
            named = FILE_LINE.search(before)
            if lang in ("yaml", "python") and named:
                blocks.append(Block("file", "\n".join(body) + "\n", named.group(1), start + 1))
            elif lang == "console":
                blocks.append(Block("console", "\n".join(body), line=start + 1))
        i += 1
    return blocks


def normal(line: str) -> str:
    return re.sub(r"\d+\.\d+ ?s\b", "N s", line.rstrip())


def same(expected: list[str], seen: list[str]) -> bool:
    if len(expected) != len(seen):
        return False
    for want, got in zip(expected, seen):
        pattern = ".*".join(re.escape(part) for part in normal(want).split("..."))
        if not re.fullmatch(pattern, normal(got)):
            return False
    return True


class Session:
    """The new user's shell: a directory, background jobs, the files as first written."""

    def __init__(self, pytester, monkeypatch):
        self.pytester = pytester
        self.dir = pytester.path
        monkeypatch.chdir(self.dir)
        self.ports = {p: str(free) for p, free in zip(("54321", "54322"), free_ports(2))}
        self.written: dict[str, str] = {}
        self.jobs: list[subprocess.Popen] = []

    def ported(self, text: str) -> str:
        for documented, free in self.ports.items():
            text = text.replace(documented, free)
        return text

    def tapstack(self, argv: list[str]) -> tuple[int, list[str]]:
        result = CliRunner().invoke(main, argv[1:])
        if result.exception and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result.exit_code, result.output.splitlines()

    def pytest(self, argv: list[str]) -> tuple[int, list[str]]:
        result = self.pytester.runpytest_inprocess(*argv[1:], "-p", "no:cacheprovider")
        return int(result.ret), [line for line in result.outlines if line.strip()]

    def background(self, argv: list[str]) -> None:
        assert argv[0] == "tapstack"
        self.jobs.append(subprocess.Popen([sys.executable, "-m", "tapstack", *argv[1:]], cwd=self.dir,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                          start_new_session=True))
        if argv[1:3] == ["wallet", "emulate"] or argv[1:3] == ["wallet", "relay"]:
            import time

            time.sleep(1.5)  # the card side is up before the reader looks (the user types slower)

    def run(self, command: str) -> tuple[int, list[str]]:
        argv = shlex.split(self.ported(command))
        if argv[0] == "tapstack":
            return self.tapstack(argv)
        if argv[0] == "pytest":
            return self.pytest(argv)
        raise AssertionError(f"the document runs {argv[0]!r}: teach this test how")

    def console(self, block: Block) -> None:
        commands: list[tuple[str, list[str]]] = []
        for line in block.text.splitlines():
            if line.startswith("$ "):
                commands.append((line[2:], []))
            else:
                commands[-1][1].append(self.ported(line))
        for command, expected in commands:
            where = f"docs/testing.md:{block.line}: $ {command}"
            if command.endswith(" &"):
                self.background(shlex.split(self.ported(command[:-2])))
                continue
            if command.startswith("kill %"):
                job = self.jobs[int(command[6:]) - 1]
                job.send_signal(signal.SIGTERM)
                assert job.wait(15) == 0, f"{where}: {job.stderr.read()}"
                continue
            code, seen = self.run(command)
            if command.startswith("pytest"):  # the dots and the time vary: the counts do not
                assert seen and re.sub(r" in .*", "", seen[-1]) == re.sub(r" in .*", "", expected[-1]), \
                    f"{where}\n" + "\n".join(seen[-30:])
                assert code == 0, f"{where}\n" + "\n".join(seen[-30:])
                continue
            assert same(expected, seen), f"{where}\nexpected:\n" + "\n".join(expected) + "\nseen:\n" + "\n".join(seen)
            failing = any(line.startswith(("Error:", "ERROR ", "FAIL ")) for line in expected)
            assert (code != 0) == failing, f"{where}: exit status {code}"
        for job in self.jobs:
            try:
                code = job.wait(20)
            except subprocess.TimeoutExpired:
                job.kill()
                code = job.wait()
            assert code == 0, f"docs/testing.md:{block.line}: a background command failed: {job.stderr.read()}"
        self.jobs.clear()

    def play(self, block: Block) -> None:
        if block.kind == "file":
            (self.dir / block.name).write_text(block.text)
            self.written.setdefault(block.name, block.text)
        elif block.kind == "console":
            self.console(block)
        elif block.kind == "edit":
            name, old, new = EDIT.fullmatch(block.text).groups()
            old, new = ast.literal_eval(old), ast.literal_eval(new)
            path = self.dir / name
            text = path.read_text()
            assert old in text, f"docs/testing.md:{block.line}: {old!r} is not in {name}"
            before, _, after = text.rpartition(old)
            path.write_text(before + new + after)
        elif block.kind == "restore":
            (self.dir / block.text).write_text(self.written[block.text])
        elif block.kind == "run":
            code, seen = self.run(block.text)
            assert code == 0, f"docs/testing.md:{block.line}: $ {block.text}\n" + "\n".join(seen)
        else:
            raise AssertionError(f"docs/testing.md:{block.line}: unknown doc-test directive {block.kind!r}")

    def stop(self) -> None:
        for job in self.jobs:
            if job.poll() is None:
                job.kill()
                job.wait()


@pytest.mark.pcscd
@pytest.mark.nfcpy_udp
def test_a_new_users_session_as_the_document_tells_it(pytester, monkeypatch, pcscd_vpcd):
    session = Session(pytester, monkeypatch)
    blocks = doc_blocks(DOC.read_text())
    kinds = [b.kind for b in blocks]
    assert kinds.count("file") >= 9 and kinds.count("console") >= 8
    try:
        for block in blocks:
            session.play(block)
    finally:
        session.stop()
    assert {"scenario_first.yaml", "test_first.py", "scenario_replay.yaml", "gym.card.yaml", "scenario_gym.yaml",
            "gym_checks.py", "gym_card.py", "test_gym.py"} <= set(session.written)
    assert (pytester.path / "report.xml").exists() and (pytester.path / "relayed.trace.jsonl").exists()


def _documented() -> str:
    return DOC.read_text()


def test_the_reference_names_every_key_step_and_card_type():
    from tapstack.testing import scenario as s

    doc = _documented()
    names = [*s.TOP_KEYS, *s.CARD_TYPES, *s.READER_KEYS, *s.ACTIONS, *s.EXPECT_KEYS, *s.SEND_KEYS, *s.SELECT_KEYS,
             *s.CALL_KEYS, *s.RULE_KEYS, *s.ANSWER_KEYS, *(k for keys in s.CARD_TYPES.values() for k in keys)]
    missing = sorted({n for n in names if f"`{n}`" not in doc and f"{n}`" not in doc and f"{{{n}" not in doc
                      and f", {n}" not in doc})
    assert missing == []


def test_the_fixture_table_lists_every_fixture_of_the_plugin():
    import tapstack.testing.plugin as plugin

    doc = _documented()
    fixtures = [name for name, value in vars(plugin).items() if type(value).__name__ == "FixtureFunctionDefinition"
                or hasattr(value, "_fixture_function_marker")]
    assert fixtures and [f for f in fixtures if f"| `{f}`" not in doc and f"/ `{f}`" not in doc] == []


def test_the_entry_point_the_document_names_is_the_installed_one():
    from importlib.metadata import entry_points

    names = [ep.name for ep in entry_points(group="pytest11") if ep.value == "tapstack.testing.plugin"]
    if not names:
        pytest.skip("tapstack is not installed with its pytest11 entry point here")
    assert names == ["tapstack.testing.plugin"]
    assert "`-p no:tapstack.testing.plugin` turns it off" in _documented()
