"""Scenario files: reader scenarios in YAML, loaded into plain values with their line numbers.

    scenario: purse tap accepted
    cards:
      alice: {type: purse, balance: 2000}
    readers:
      validator: {fare: 200, currency: CNY}
    steps:
      - present: {card: alice, reader: validator}
      - expect: {outcome: accept, reason: paid, balance: 1800}

or, for anyone's card, with the generic reader steps:

    cards:
      club: {type: scripted, answers: {"00A4040007F0434C554201*": "9000", "80CA0000*": "0102 9000"}}
    steps:
      - present: club
      - select: "F0434C554201"
      - send: {apdu: "80CA000002", expect: {sw: "9000", data: "0102"}, capture: {points: data}}

`load_scenario(path)` checks the whole file before anything runs and reports every
error it finds (FileErrors), each "FILE:LINE: what is wrong" with "did you mean" for a
misspelt key, card, reader, step or value. The keys, card types and steps are in
docs/testing.md; the tables below are the authority.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

from protocol.purse import (
    CURRENCY_CODES, ID_SIZE, MAX_AMOUNT, MAX_BALANCE, NONCE_SIZE,
)
from protocol.emv import luhn_valid
from tapstack.testing.expect import (AnswerCheck, PatternError, check_capture, hex_problem, pattern_of,
                                     placeholder, tlv_path, variables_in)
from tapstack.testing.yamlfile import (Check, FileErrors, Map, ScenarioError, Seq, colon_hint, did_you_mean,
                                       kind_of, load_yaml, new_map, read_text)

__all__ = ["ScenarioError", "FileErrors", "Scenario", "Step", "CardSpec", "ReaderSpec", "load_scenario",
           "parse_scenario", "find_scenarios", "is_scenario_file", "load_card_file", "load_yaml"]

DEFAULT_NOW = datetime(2026, 11, 27, 8, 30, tzinfo=timezone.utc)
OUTCOMES = ("accept", "deny", "error")
KINDS = ("purse", "emv", "uid", "unknown", "error")
PROGRAMS = ("tap", "validator", "none")


def _reasons() -> dict[str, str]:
    """Every reason a tap or the validator gives, with the message the rider reads."""
    from terminal.card import MESSAGES

    return dict(MESSAGES)


# --- the scenario model ----------------------------------------------------------------

@dataclass(frozen=True)
class CardSpec:
    name: str
    type: str  # purse, emv, uid, scripted, python, replay
    options: dict
    line: int
    description: dict = field(default_factory=dict, compare=False)  # as written: for the card's image
    base: Path = Path(".")  # where its relative files live


@dataclass(frozen=True)
class ReaderSpec:
    name: str
    fare: int
    currency: str
    terminal_id: bytes
    deny: tuple[str, ...]  # card names, card ids in hex, or tokens
    nonce: bytes | None
    line: int
    program: str = "tap"  # tap: terminal.tap.tap; validator: the bus validator; none: the reader alone
    route: str = "R1"
    stop: str = "S1"
    repeat_window: float = 60.0  # seconds; validator only


@dataclass(frozen=True)
class Step:
    action: str  # present, expect, remove, tear_after, slow, wait, advance, select, send, call, save
    args: dict
    line: int
    source: str  # the step as written in the file


@dataclass
class Scenario:
    path: Path
    name: str
    now: datetime
    cards: dict[str, CardSpec]
    readers: dict[str, ReaderSpec]
    steps: list[Step]
    transports: tuple[str, ...] | None = None
    description: str = ""
    lines: list[str] = field(default_factory=list, repr=False)
    variables: dict[str, str] = field(default_factory=dict)

    def where(self, line: int) -> str:
        return f"{self.path}:{line}"


# --- cards -----------------------------------------------------------------------------

COMMON = {"uid": "4, 7 or 10 bytes hex", "atr": "the ATR the card presents (hex)",
          "protocol": "T=0 or T=1 (default T=1)"}
CARD_TYPES: dict[str, dict[str, str]] = {
    "purse": {"balance": "opening balance in minor units (default 2000)", "currency": "ISO 4217 (default CNY)",
              "card_id": "8 bytes hex (default from the card's name)", "uid": "hex", "locked": "true/false",
              "image": "the purse's state saved (save step)"},
    "emv": {"pan": "a test card number (default 4242424242424242)", "expiry": "YYMM", "uid": "hex",
            "holder": "cardholder name"},
    "uid": {"uid": "4, 7 or 10 bytes hex"},
    "scripted": {**COMMON, "answers": "command: answer, or a list of {command or regex, answer, state, then, times}",
                 "default": "the answer when no rule matches (default 6D00)",
                 "function": "module:function or file.py:function answering command bytes",
                 "ordered": "true: the rules are a script, answered in turn (default false)",
                 "state": "the state the card starts in (rules with state: answer only then)",
                 "strict": "ordered: fail the step on a command out of turn (default true)",
                 "image": "the card's state saved (save step)"},
    "python": {**COMMON, "class": "module:Class or file.py:Class (a tapstack.testing.Card)",
               "options": "the class's keyword arguments", "image": "the card's state saved (save step)"},
    "replay": {"trace": "a trace file (terminal trace --out), relative to this file",
               "match": "shape (default) or exact", "strict": "fail on a command the trace lacks (default true)"},
}
RULE_KEYS = {"command": "hex pattern (x or ? any digit, * any bytes)", "regex": "a regular expression over the hex",
             "answer": "hex, or a list answered in turn", "state": "only in this state (or list of states)",
             "then": "the card's state afterwards", "times": "ordered: commands this rule answers (default 1)"}


def derived_bytes(name: str, prefix: bytes, size: int) -> bytes:
    """Bytes derived from a card's name, so distinct cards get distinct ids run after run."""
    return prefix + hashlib.sha256(name.encode()).digest()[:size - len(prefix)]


def _plain(value: Any) -> Any:
    """A Map/Seq/Number tree as plain dicts, lists and ints (for a card's image)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool):
        return int(value)
    return value


def _card(check: Check, name: str, spec: Any, line: int) -> CardSpec:
    base = check.path.parent
    if isinstance(spec, str) and not colon_hint(spec, CARD_TYPES["purse"].keys() | {"type"}):
        spec = new_map({"file": spec}, line)  # club: club.card.yaml
    spec = check.mapping(spec, line, f"card {name!r}", keys=("type", "file"))
    if "file" in spec:
        spec, base = _card_file(check, spec, line)
    if "type" not in spec:
        hint = next((colon_hint(k, ("type",)) for k in spec if colon_hint(k, ("type",))), "")
        check.fail(line, hint or f"card {name!r} needs a type: one of {', '.join(CARD_TYPES)}")
    kind = check.choice(spec["type"], spec.at("type"), "card type", tuple(CARD_TYPES))
    check.part(lambda: check.keys(spec, {"type": None, **CARD_TYPES[kind]}, f"a card of type {kind}"))
    at = spec.at
    o: dict[str, Any] = {}
    if "uid" in spec:
        o["uid"] = check.hex_bytes(spec["uid"], at("uid"), "uid", (4, 7, 10))
    if "atr" in spec:
        o["atr"] = check.hex_bytes(spec["atr"], at("atr"), "atr")
        if not 2 <= len(o["atr"]) <= 33 or o["atr"][0] not in (0x3B, 0x3F):
            check.fail(at("atr"), "atr must be 2 to 33 bytes starting 3B (or 3F)")
    if "protocol" in spec:
        o["protocol"] = check.choice(str(spec["protocol"]).upper().replace(" ", ""), at("protocol"), "protocol",
                                     ("T=0", "T=1"))
    if kind == "purse":
        o["balance"] = check.integer(spec.get("balance", 2000), at("balance"), "balance", 0, MAX_BALANCE)
        o["currency"] = check.choice(spec.get("currency", "CNY"), at("currency"), "currency",
                                     tuple(sorted(CURRENCY_CODES)))
        o["card_id"] = (check.hex_bytes(spec["card_id"], at("card_id"), "card_id", (ID_SIZE,))
                        if "card_id" in spec else derived_bytes(name, b"TAP", ID_SIZE))
        o["locked"] = check.boolean(spec.get("locked", False), at("locked"), "locked")
    elif kind == "emv":
        pan = str(spec.get("pan", "4242424242424242")).replace(" ", "")
        if not (pan.isdigit() and 12 <= len(pan) <= 19 and luhn_valid(pan)):
            check.fail(at("pan"), "pan must be 12 to 19 digits passing the Luhn check (a test number, in quotes)")
        o["pan"] = pan
        expiry = str(spec.get("expiry", "3012"))
        if not (len(expiry) == 4 and expiry.isdigit() and 1 <= int(expiry[2:]) <= 12):
            check.fail(at("expiry"), f"expiry must be YYMM, not {expiry!r}")
        o["expiry"] = expiry
        o["holder"] = check.text(spec.get("holder", "TEST/CARDHOLDER"), at("holder"), "holder")
        o.setdefault("uid", derived_bytes(name, b"\x04", 7))
    elif kind == "uid":
        if "uid" not in spec:
            check.fail(line, f"card {name!r} of type uid needs 'uid'")
    elif kind == "scripted":
        _scripted(check, name, spec, o, base, line)
    elif kind == "python":
        _python(check, name, spec, o, base, line)
    elif kind == "replay":
        if "trace" not in spec:
            check.fail(line, f"card {name!r} of type replay needs 'trace'")
        path = base / check.text(spec["trace"], at("trace"), "trace")
        from terminal.trace import TraceError, read_trace

        try:
            o["sessions"] = read_trace(path)
        except TraceError as e:
            check.fail(at("trace"), str(e))
        o["trace"] = path
        o["match"] = check.choice(spec.get("match", "shape"), at("match"), "match", ("shape", "exact"))
        o["strict"] = check.boolean(spec.get("strict", True), at("strict"), "strict")
    if "image" in spec:
        o["image"] = _plain(check.mapping(spec["image"], at("image"), "image"))
    description = _plain({k: v for k, v in spec.items() if k != "image"})
    return CardSpec(name, kind, o, line, description, base)


def _card_file(check: Check, spec: Map, line: int) -> tuple[Map, Path]:
    """The card described in another file (a card file or a saved image), with the keys given here on top."""
    path = check.path.parent / check.text(spec["file"], spec.at("file"), "file")
    try:
        doc = load_yaml(read_text(path), path)
    except ScenarioError as e:
        check.fail(spec.at("file"), f"card file: {e}")
    if not isinstance(doc, Map):
        check.fail(spec.at("file"), f"card file {path}: must be a mapping of the card's keys, not {kind_of(doc)}")
    merged = Map({**doc, **{k: v for k, v in spec.items() if k != "file"}})
    merged.line, merged.key_lines = line, {k: line for k in merged}
    return merged, path.parent


def _scripted(check: Check, name: str, spec: Map, o: dict, base: Path, line: int) -> None:
    at = spec.at
    o.setdefault("uid", derived_bytes(name, b"\x04", 7))
    o["rules"] = _rules(check, spec.get("answers", Map()), at("answers"))
    o["default"] = _answer(check, spec.get("default", "6D00"), at("default"), "default")
    o["ordered"] = check.boolean(spec.get("ordered", False), at("ordered"), "ordered")
    o["strict"] = check.boolean(spec.get("strict", True), at("strict"), "strict")
    if "state" in spec:
        o["state"] = check.text(str(spec["state"]), at("state"), "state")
    states = {s for r in o["rules"] for s in r.states} | {r.then for r in o["rules"] if r.then}
    if states and "state" not in spec:
        check.fail(line, f"scripted card {name!r}: its rules name states ({', '.join(sorted(states))}): "
                              "say which it starts in with state: ...")
    if "state" in spec:
        reached = {o["state"]} | {r.then for r in o["rules"] if r.then}
        for rule in o["rules"]:
            for s in set(rule.states) - reached:
                check.fail(rule.line, f"state {s!r} is never reached: {did_you_mean(s, reached)}the card starts "
                                      f"in {o['state']!r} and rules move it on with then: ...")
    if "function" in spec:
        o["function"] = _function(check, spec["function"], at("function"), base)
    if not o["rules"] and "function" not in o and "default" not in spec:
        check.fail(line, f"scripted card {name!r} needs answers, a default or a function")


def _answer(check: Check, value: Any, line: int, what: str) -> bytes:
    from tapstack.testing.cards import answer_bytes

    value = value.text if hasattr(value, "text") else value  # answer: 9000 without quotes
    if not isinstance(value, str):
        check.fail(line, f"{what} must be hex text in quotes (e.g. \"6A82\"), not {kind_of(value)}")
    try:
        return answer_bytes(value, what)
    except PatternError as e:
        check.fail(line, str(e))


def _rules(check: Check, value: Any, line: int) -> list:
    from tapstack.testing.cards import Rule

    if isinstance(value, Seq):
        items = []
        for item, item_line in zip(value, value.item_lines):
            item = check.mapping(item, item_line, "a rule", keys=RULE_KEYS)
            check.keys(item, RULE_KEYS, "a rule", required=("answer",))
            if ("command" in item) == ("regex" in item):
                check.fail(item.line, "a rule matches with command: (hex pattern) or regex: (a regular expression)")
            matcher = ({"regex": item["regex"]}, item.at("regex")) if "regex" in item else \
                (item["command"], item.at("command"))
            states = item.get("state")
            if states is not None and not (isinstance(states, str) or
                                           isinstance(states, list) and all(isinstance(s, str) for s in states)):
                check.fail(item.at("state"), "state must be a state's name or a list of names")
            then = check.text(str(item["then"]), item.at("then"), "then") if "then" in item else None
            times = check.integer(item.get("times", 1), item.at("times"), "times", 1, 10000)
            items.append((matcher, item["answer"], item.at("answer"), states, then, times, item.line))
    else:
        value = check.mapping(value, line, "answers")
        items = [((pattern, value.key_lines[pattern]), answer, value.key_lines[pattern], None, None, 1,
                  value.key_lines[pattern]) for pattern, answer in value.items()]
    rules = []
    for (pattern, pattern_line), answer, answer_line, states, then, times, rule_line in items:
        pattern = pattern.text if hasattr(pattern, "text") else _plain(pattern)
        answers = answer if isinstance(answer, Seq) else [answer]
        if not answers:
            check.fail(answer_line, f"command {pattern}: an empty list of answers")
        parsed = [_answer(check, a, answer_line, f"the answer to {pattern}") for a in answers]
        try:
            rules.append(Rule.of(pattern, parsed, states, then, times, rule_line))
        except PatternError as e:
            check.fail(pattern_line, str(e))
    return rules


def _function(check: Check, value: Any, line: int, base: Path):
    from tapstack.testing.cards import load_class

    spec = check.text(value, line, "function")
    try:
        function = load_class(spec, base)
    except PatternError as e:
        check.fail(line, f"function {e}")
    except Exception as e:  # the user's module: whatever it raises, say so in one line
        check.fail(line, f"function {spec!r} cannot be loaded: {type(e).__name__}: {e}")
    if not callable(function):
        check.fail(line, f"function {spec!r} is not callable")
    return function


def _python(check: Check, name: str, spec: Map, o: dict, base: Path, line: int) -> None:
    import inspect

    from tapstack.testing.cards import load_class

    at = spec.at
    if "class" not in spec:
        check.fail(line, f"card {name!r} of type python needs 'class' (module:Class or file.py:Class)")
    text = check.text(spec["class"], at("class"), "class")
    try:
        cls = load_class(text, base)
    except PatternError as e:
        check.fail(at("class"), f"class {e}")
    except Exception as e:  # the user's module failing to import
        check.fail(at("class"), f"class {text!r} cannot be loaded: {type(e).__name__}: {e}")
    if not isinstance(cls, type) or not callable(getattr(cls, "process", None)):
        check.fail(at("class"), f"class {text!r} must be a class with process(command) (a tapstack.testing.Card)")
    options = _plain(check.mapping(spec.get("options", new_map({}, spec.line)), at("options"), "options"))
    try:
        inspect.signature(cls).bind(**options)
    except TypeError as e:
        check.fail(at("options"), f"options do not fit {text}: {e}")
    o["class"], o["options"] = cls, options


def load_card_file(path: str | Path, name: str | None = None) -> CardSpec:
    """A card file (one card's keys in YAML, as under cards: in a scenario, or a saved image)."""
    path = Path(path)
    check = Check(path)
    doc = load_yaml(read_text(path), path)
    spec = check.part(lambda: _card(check, name or path.name.split(".")[0], doc, 1))
    check.done()
    return spec


# --- readers ---------------------------------------------------------------------------

READER_KEYS = {"fare": "minor units (default 200)", "currency": "ISO 4217 (default CNY)",
               "terminal_id": "8 ASCII characters (default TERM0001)", "deny": "card names, card ids or tokens",
               "nonce": "8 bytes hex: every tap's transaction id (default random)",
               "program": "tap (the tap decision), validator (the bus validator: repeat taps, journal) or "
                          "none (the reader alone, for select, send and call)",
               "route": "validator: its route (default R1)", "stop": "validator: its stop (default S1)",
               "repeat_window": "validator: seconds within which a second tap is refused (default 60)"}
VALIDATOR_ONLY = ("route", "stop", "repeat_window")


def _reader(check: Check, name: str, spec: Any, line: int, default_program: str) -> ReaderSpec:
    spec = new_map({}, line) if spec is None else check.mapping(spec, line, f"reader {name!r}", keys=READER_KEYS)
    check.part(lambda: check.keys(spec, READER_KEYS, f"reader {name!r}"))
    at = spec.at
    fare = check.integer(spec.get("fare", 200), at("fare"), "fare", 1, MAX_AMOUNT)
    currency = check.choice(spec.get("currency", "CNY"), at("currency"), "currency", tuple(sorted(CURRENCY_CODES)))
    tid = check.text(spec.get("terminal_id", "TERM0001"), at("terminal_id"), "terminal_id")
    if not (tid.isascii() and len(tid) == ID_SIZE):
        check.fail(at("terminal_id"), f"terminal_id must be {ID_SIZE} ASCII characters, not {tid!r}")
    deny = spec.get("deny", Seq())
    if not isinstance(deny, list) or not all(isinstance(d, str) for d in deny):
        check.fail(at("deny"), "deny must be a list of card names, card ids (hex) or tokens")
    nonce = check.hex_bytes(spec["nonce"], at("nonce"), "nonce", (NONCE_SIZE,)) if "nonce" in spec else None
    program = check.choice(spec.get("program", default_program), at("program"), "program", PROGRAMS)
    if program != "validator":
        for key in VALIDATOR_ONLY:
            if key in spec:
                check.fail(at(key), f"{key!r} is for readers with program: validator")
    elif nonce is not None:
        check.fail(at("nonce"), "the validator draws its own nonces: 'nonce' is for program: tap")
    route = check.text(str(spec.get("route", "R1")), at("route"), "route")
    stop = check.text(str(spec.get("stop", "S1")), at("stop"), "stop")
    window = check.number(spec.get("repeat_window", 60), at("repeat_window"), "repeat_window", 86400)
    return ReaderSpec(name, fare, currency, tid.encode("ascii"), tuple(deny), nonce, line, program, route, stop,
                      window)


# --- steps -----------------------------------------------------------------------------

TAP_EXPECT_KEYS = {"outcome": "accept, deny or error", "kind": "purse, emv, uid, unknown or error",
                   "reason": "paid, recovered, token, insufficient_balance, deny_listed, card_removed, ...",
                   "balance": "the purse card's balance now", "balance_after": "the balance the receipt states",
                   "amount": "debited", "token": "a card's name (its token), a token, or null",
                   "pending": "unfinished debits the reader keeps", "apdus": "how many command APDUs the tap sent",
                   "message": "validator: what the rider reads", "journalled": "validator: taps in its journal"}
EXPECT_KEYS = {**TAP_EXPECT_KEYS, "atr": "the ATR the reader got (hex pattern)",
               "uid": "the UID the reader got (hex pattern)", "reader": "whose last card (default: the last one)"}
ANSWER_KEYS = {"sw": "status word pattern (9000, 6Axx, 63Cx) or a list of them; default 9000",
               "data": "the answer's data: hex pattern or {regex: ...}",
               "tlv": "tag path: hex pattern, {regex: ...}, \"*\" (present) or null (absent)"}
SELECT_KEYS = {"aid": "the application identifier (hex)", "expect": "sw, data, tlv",
               "capture": "name: data, sw, data[0:4], {tlv: TAG} or {regex: ...}", "reader": "which reader"}
SEND_KEYS = {"apdu": "the command in hex ({name} for a variable); with data or le, its 4-byte header",
             "data": "the command's data: Lc is counted for you", "le": "the expected length (0 to 256; 0 is 256)",
             "expect": "sw, data, tlv", "capture": "name: data, sw, data[0:4], {tlv: TAG} or {regex: ...}",
             "reader": "which reader"}
CALL_KEYS = {"function": "module:function or file.py:function, called with the card", "args": "its keyword arguments",
             "reader": "which reader"}
ACTIONS = ("present", "expect", "remove", "tear_after", "slow", "wait", "advance", "select", "send", "call", "save")
READER_STEPS = ("select", "send", "call")  # the generic steps: they need a card in the field
BARE = ("remove", "wait")  # steps that may stand alone


class _Steps:
    """Checks the steps in order, knowing which variables are set by then."""

    def __init__(self, check: Check, cards: dict, card_lines: dict, readers: dict, lines: list[str],
                 variables: dict[str, str]):
        self.check, self.cards, self.card_lines, self.readers, self.lines = check, cards, card_lines, readers, lines
        self.known = set(variables)  # set by variables: or by an earlier capture
        self.open = False  # a call step ran: it may set any variable

    def reader_of(self, mapping: Map | None, line: int) -> str | None:
        name = mapping.get("reader") if mapping else None
        if name is None:
            return None
        if name not in self.readers:
            self.check.fail(line, f"unknown reader {name!r}: {did_you_mean(name, self.readers)}"
                                  f"the readers are {', '.join(self.readers)}")
        return name

    def card_name(self, name: Any, line: int) -> str:
        if name not in self.card_lines:
            self.check.fail(line, f"unknown card {name!r}: {did_you_mean(name, self.card_lines)}"
                                  f"the cards are {', '.join(self.card_lines) or '(none declared)'}")
        return name

    def uses(self, text: str, line: int) -> None:
        for name in variables_in(text):
            if name not in self.known and not self.open:
                self.check.fail(line, f"variable {name!r} is not set before this step: "
                                      f"{did_you_mean(name, self.known)}set it under variables: or capture it "
                                      "in an earlier step")

    def hex_with_variables(self, value: Any, line: int, what: str) -> str:
        if not isinstance(value, str):
            self.check.fail(line, f"{what} must be hex text in quotes, not {kind_of(value)}")
        self.uses(value, line)
        problem = hex_problem(placeholder(value))
        if problem:
            self.check.fail(line, f"{what} {value!r}: {problem}")
        return value

    def step(self, action: str, value: Any, line: int, source: str) -> Step:
        check = self.check
        args: dict[str, Any] = {}
        if action == "present":
            if isinstance(value, str):
                value = new_map({"card": value}, line)
            value = check.mapping(value, line, "present", keys=("card", "reader"))
            check.keys(value, {"card": None, "reader": None}, "present", required=("card",))
            args = {"card": self.card_name(value["card"], value.at("card")),
                    "reader": self.reader_of(value, value.at("reader"))}
        elif action == "expect":
            args = self.expect(value, line)
        elif action in BARE and value is None:
            pass
        elif action == "remove":
            if isinstance(value, str):
                value = new_map({"reader": value}, line)
            value = check.mapping(value, line, "remove", keys=("reader",))
            check.keys(value, {"reader": None}, "remove")
            args = {"reader": self.reader_of(value, line)}
        elif action == "wait":
            args = {"seconds": check.number(value, line, "wait")}
        elif action == "advance":
            args = {"seconds": check.number(value, line, "advance", 366 * 86400)}
        elif action in ("tear_after", "slow"):
            key = "n" if action == "tear_after" else "seconds"
            if not isinstance(value, Map):
                value = new_map({key: value}, line)
            check.keys(value, {key: None, "reader": None}, action, required=(key,))
            if action == "tear_after":
                args = {"n": check.integer(value[key], value.at(key), "tear_after", 1, 1000)}
            else:
                args = {"seconds": check.number(value[key], value.at(key), "slow", 5.0)}
            args["reader"] = self.reader_of(value, value.at("reader"))
        elif action == "select":
            args = self.exchange(value, line, "select", SELECT_KEYS, "aid")
        elif action == "send":
            args = self.exchange(value, line, "send", SEND_KEYS, "apdu")
        elif action == "call":
            args = self.call(value, line)
        elif action == "save":
            value = check.mapping(value, line, "save", keys=("card", "file"))
            check.keys(value, {"card": "which card", "file": "the image to write, relative to this file"},
                       "save", required=("card", "file"))
            args = {"card": self.card_name(value["card"], value.at("card")),
                    "file": check.text(value["file"], value.at("file"), "file")}
        return Step(action, args, line, source)

    def expect(self, value: Any, line: int) -> dict:
        check = self.check
        value = check.mapping(value, line, "expect", keys=EXPECT_KEYS)
        misplaced = [k for k in value if k in ANSWER_KEYS]
        if misplaced:
            check.fail(value.at(misplaced[0]), f"{misplaced[0]!r} checks the answer of a select or send: write it "
                                               f"on that step, e.g. - send: {{apdu: ..., expect: {{{misplaced[0]}: ...}}}}")
        check.keys(value, EXPECT_KEYS, "expect")
        if not value:
            check.fail(line, "expect needs at least one of " + ", ".join(EXPECT_KEYS))
        reasons = _reasons()
        before = len(check.errors)
        for key, v in value.items():
            check.part(lambda key=key, v=v: self.expect_value(key, v, value.at(key), reasons))
        if len(check.errors) > before:  # each key said what is wrong with it: the step is not usable
            check.abandon()
        args = {k: _plain(v) for k, v in value.items()}
        args["reader"] = self.reader_of(value, value.at("reader"))
        tap_keys = [k for k in value if k in TAP_EXPECT_KEYS]
        named = args["reader"]
        readers = [self.readers[named]] if named else list(self.readers.values())
        if tap_keys and all(r.program == "none" for r in readers):
            check.fail(value.at(tap_keys[0]), f"{tap_keys[0]!r} checks a tap, but the reader runs no program "
                                              "(program: none, the default in a scenario with select, send or "
                                              "call steps): give the reader program: tap")
        return args

    def expect_value(self, key: str, v: Any, at: int, reasons: dict) -> None:
        check = self.check
        if key == "outcome":
            check.choice(v, at, "outcome", OUTCOMES)
        elif key == "kind":
            check.choice(v, at, "kind", KINDS)
        elif key == "reason":
            check.choice(v, at, "reason", tuple(reasons))
        elif key == "message":
            check.choice(v, at, "message", tuple(dict.fromkeys(reasons.values())))
        elif key in ("balance", "balance_after", "amount", "pending", "apdus", "journalled"):
            check.integer(v, at, key)
        elif key == "token" and v is not None:
            check.text(v, at, "token")
        elif key in ("atr", "uid"):
            self.pattern(v, at, key)

    def pattern(self, value: Any, line: int, what: str):
        if isinstance(value, str):
            self.uses(value, line)
            value = placeholder(value)
        try:
            return pattern_of(value, what)
        except PatternError as e:
            self.check.fail(line, str(e))

    def answer_check(self, value: Any, line: int) -> AnswerCheck:
        check = self.check
        value = check.mapping(value, line, "expect", keys=ANSWER_KEYS)
        wrong_place = [k for k in value if k in TAP_EXPECT_KEYS]
        if wrong_place:
            check.fail(value.at(wrong_place[0]), f"{wrong_place[0]!r} checks a tap: write it in an expect step")
        check.keys(value, ANSWER_KEYS, "the expect of a select or send")
        sw = value.get("sw")
        sws = list(sw) if isinstance(sw, list) else [sw] if sw is not None else ["9000"]
        for s in sws:
            self.pattern(s, value.at("sw"), "sw")
        sws = [s.text if hasattr(s, "text") else s for s in sws]
        data = value.get("data")
        if data is not None:
            self.pattern(data, value.at("data"), "data")
        tlvs = []
        if "tlv" in value:
            mapping = check.mapping(value["tlv"], value.at("tlv"), "tlv")
            for path, expected in mapping.items():
                try:
                    tlv_path(path)
                except PatternError as e:
                    check.fail(mapping.at(path), str(e))
                if expected is not None and expected != "*":
                    self.pattern(expected, mapping.at(path), f"tlv {path}")
                tlvs.append((path, _plain(expected)))
        return AnswerCheck(tuple(_plain(s) for s in sws), _plain(data), tuple(tlvs), default_sw=sw is None)

    def exchange(self, value: Any, line: int, action: str, keys: dict, main: str) -> dict:
        check = self.check
        if isinstance(value, (str, int)) and not isinstance(value, bool):
            value = new_map({main: value.text if hasattr(value, "text") else value}, line)
        value = check.mapping(value, line, action, keys=keys)
        check.keys(value, keys, action, required=(main,))
        args: dict[str, Any] = {main: self.hex_with_variables(value[main], value.at(main), main)}
        if action == "send":
            header = len(bytes.fromhex("".join(placeholder(args["apdu"]).split())))
            if "data" in value or "le" in value:
                if header != 4:
                    check.fail(value.at("apdu"), f"with data or le, apdu is the 4-byte header (CLA INS P1 P2), "
                                                 f"not {header} bytes")
                if "data" in value:
                    args["data"] = self.hex_with_variables(value["data"], value.at("data"), "data")
                if "le" in value:
                    args["le"] = check.integer(value["le"], value.at("le"), "le", 0, 256) or 256
            elif header < 4:
                check.fail(value.at("apdu"), f"a command APDU has at least 4 bytes (CLA INS P1 P2), not {header}")
        elif len(bytes.fromhex("".join(placeholder(args["aid"]).split()))) not in range(1, 17):
            check.fail(value.at("aid"), "an AID is 1 to 16 bytes (5 to 16 for a registered one)")
        args["expect"] = self.answer_check(value.get("expect", new_map({}, line)), value.at("expect"))
        args["capture"] = {}
        if "capture" in value:
            mapping = check.mapping(value["capture"], value.at("capture"), "capture")
            for name, source in mapping.items():
                if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                    check.fail(mapping.at(name), f"capture name {name!r}: a name is letters, digits and _")
                try:
                    check_capture(_plain(source), f"capture {name}")
                except PatternError as e:
                    check.fail(mapping.at(name), str(e))
                args["capture"][name] = _plain(source)
        self.known |= set(args["capture"])
        args["reader"] = self.reader_of(value, value.at("reader"))
        return args

    def call(self, value: Any, line: int) -> dict:
        check = self.check
        if isinstance(value, str):
            value = new_map({"function": value}, line)
        value = check.mapping(value, line, "call", keys=CALL_KEYS)
        check.keys(value, CALL_KEYS, "call", required=("function",))
        function = _function(check, value["function"], value.at("function"), check.path.parent)
        args = _plain(check.mapping(value.get("args", new_map({}, line)), value.at("args"), "args"))
        self.open = True
        return {"function": function, "name": value["function"], "args": args,
                "reader": self.reader_of(value, value.at("reader"))}


def _step_items(check: Check, value: Any, line: int, lines: list[str]):
    """(action, value, line, source) for each step written, in order."""
    if not isinstance(value, Seq) or not value:
        check.fail(line, "steps must be a list of steps (- present: ..., - expect: ...)")
    for item, at in zip(value, value.item_lines):
        source = lines[at - 1].strip() if 0 < at <= len(lines) else ""
        if isinstance(item, str):
            if colon_hint(item, ACTIONS):
                yield "error", colon_hint(item, ACTIONS), at, source
            elif item in ACTIONS and item not in BARE:
                yield "error", f"step {item!r} needs a value: - {item}: ...", at, source
            elif item not in BARE:
                yield "error", f"unknown step {item!r}: {did_you_mean(item, ACTIONS)}steps are {', '.join(ACTIONS)}", \
                    at, source
            else:
                yield item, None, at, source
            continue
        if not isinstance(item, Map):
            yield "error", f"a step must be a mapping (key: value), not {kind_of(item)}", at, source
            continue
        unknown = [k for k in item if k not in ACTIONS]
        for key in unknown:
            hint = colon_hint(key, ACTIONS) or (did_you_mean(key, ACTIONS) + f"valid keys are {', '.join(ACTIONS)}")
            yield "error", f"unknown key {key!r} in a step: {hint}", item.key_lines[key], source
        for action, args in item.items():  # several actions in one item run in the order written
            if action in unknown:
                continue
            key_line = item.key_lines[action]
            text = lines[key_line - 1].strip() if 0 < key_line <= len(lines) else source
            yield action, args, key_line, text


# --- the file --------------------------------------------------------------------------

TOP_KEYS = {"scenario": "its name", "description": "what it shows", "now": "the terminal's clock, UTC",
            "transports": "run only over these (mock, pcscd, nfcpy)", "cards": "the cards by name",
            "readers": "the readers by name", "variables": "values for {name} in commands (hex)",
            "steps": "what happens, in order"}


def _now(check: Check, doc: Map) -> datetime:
    now = doc.get("now", DEFAULT_NOW)
    if isinstance(now, str):
        try:
            now = datetime.fromisoformat(now.replace("Z", "+00:00"))
        except ValueError:
            check.fail(doc.at("now"), f"now must be a UTC time like 2026-11-27T08:30:00Z, not {now!r}")
    if isinstance(now, date) and not isinstance(now, datetime):
        now = datetime(now.year, now.month, now.day, tzinfo=timezone.utc)
    if not isinstance(now, datetime):
        check.fail(doc.at("now"), f"now must be a UTC time like 2026-11-27T08:30:00Z, not {kind_of(now)}")
    return now.replace(tzinfo=timezone.utc) if now.tzinfo is None else now.astimezone(timezone.utc)


def _transports(check: Check, doc: Map):
    from tapstack.testing.fields import parse_transports

    raw = doc["transports"]
    try:
        return tuple(parse_transports(raw if isinstance(raw, (str, list)) else str(raw)))
    except ValueError as e:
        check.fail(doc.at("transports"), str(e))


def _variables(check: Check, doc: Map) -> dict[str, str]:
    mapping = check.mapping(doc["variables"], doc.at("variables"), "variables")
    out = {}
    for name, value in mapping.items():
        if hasattr(value, "text"):
            value = value.text
        out[name] = check.hex_bytes(value, mapping.at(name), f"variable {name}").hex().upper()
    return out


def parse_scenario(text: str, path: str | Path) -> Scenario:
    path = Path(path)
    check = Check(path)
    doc = load_yaml(text, path)
    if doc is None:
        check.fail(None, "the file is empty")
    doc = check.mapping(doc, 1, "a scenario file", keys=TOP_KEYS)
    check.part(lambda: check.keys(doc, TOP_KEYS, "a scenario", required=("steps",)))
    name = check.part(lambda: check.text(str(doc.get("scenario", path.stem)), doc.at("scenario"), "scenario"),
                      path.stem)
    now = check.part(lambda: _now(check, doc), DEFAULT_NOW)
    transports = check.part(lambda: _transports(check, doc)) if "transports" in doc else None
    variables = check.part(lambda: _variables(check, doc), {}) if "variables" in doc else {}
    lines = text.splitlines()

    cards_doc = doc.get("cards") or new_map({}, doc.at("cards"))
    cards_doc = check.part(lambda: check.mapping(cards_doc, doc.at("cards"), "cards"), new_map({}, 1))
    cards = {}
    for n, spec in cards_doc.items():
        card = check.part(lambda n=n, spec=spec: _card(check, n, spec, cards_doc.key_lines[n]))
        if card is not None:
            cards[n] = card

    items = check.part(lambda: list(_step_items(check, doc.get("steps"), doc.at("steps"), lines)), []) \
        if "steps" in doc else []
    generic = any(action in READER_STEPS for action, *_ in items)
    default_program = "none" if generic else "tap"
    readers_doc = doc.get("readers")
    readers: dict[str, ReaderSpec] = {}
    if readers_doc is None:
        readers = {"reader": _reader(check, "reader", None, doc.at("steps"), default_program)}
    else:
        readers_doc = check.part(lambda: check.mapping(readers_doc, doc.at("readers"), "readers"), new_map({}, 1))
        if not readers_doc and isinstance(doc.get("readers"), Map):
            check.errors.append(ScenarioError(path, doc.at("readers"), "readers: declare at least one, or leave "
                                                                       "the key out for one default reader"))
        for n, spec in readers_doc.items():
            reader = check.part(lambda n=n, spec=spec: _reader(check, n, spec, readers_doc.key_lines[n],
                                                               default_program))
            if reader is not None:
                readers[n] = reader
    for r in readers.values():
        for entry in r.deny:
            if entry not in cards_doc and not re.fullmatch(r"[0-9A-Fa-f]{16}|(pan|uid)_\w+", entry):
                check.errors.append(ScenarioError(path, r.line, f"reader {r.name!r} denies {entry!r}: "
                                                                f"{did_you_mean(entry, cards_doc)}not a card name, "
                                                                "a card id (16 hex digits) or a token"))

    reader_names = {n: readers.get(n) or ReaderSpec(n, 200, "CNY", b"", (), None, 0, "tap")
                    for n in (readers_doc or {"reader": None})}
    steps_check = _Steps(check, cards, dict(cards_doc.key_lines), reader_names, lines, variables)
    steps = []
    for action, value, at, source in items:
        if action == "error":
            check.errors.append(ScenarioError(path, at, value))
            continue
        step = check.part(lambda a=action, v=value, at=at, s=source: steps_check.step(a, v, at, s))
        if step is not None:
            steps.append(step)
    for step in steps:
        if step.action == "present" and step.args["reader"] is None and len(reader_names) > 1:
            check.errors.append(ScenarioError(path, step.line, f"present: which reader? there are "
                                                               f"{', '.join(reader_names)}"))
    check.done()
    description = doc.get("description", "")
    return Scenario(path, name, now, cards, readers, steps, transports, str(description or ""), lines, variables)


def load_scenario(path: str | Path) -> Scenario:
    path = Path(path)
    return parse_scenario(read_text(path), path)


def is_scenario_file(path: Path) -> bool:
    name = path.name
    return name.endswith((".scenario.yaml", ".scenario.yml")) or (
        name.startswith("scenario_") and name.endswith((".yaml", ".yml")))


def find_scenarios(path: str | Path) -> list[Path]:
    """A scenario file, or the scenario files under a directory (scenario_*.yaml, *.scenario.yaml)."""
    path = Path(path)
    if path.is_dir():
        return sorted(f for f in path.rglob("*") if f.is_file() and is_scenario_file(f))
    return [path]
