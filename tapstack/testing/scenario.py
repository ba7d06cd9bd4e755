"""Scenario files: tap scenarios in YAML, loaded into plain values with their line numbers.

    scenario: purse tap accepted
    now: 2026-11-27T08:30:00Z          # the terminal's clock (UTC)
    cards:
      alice: {type: purse, balance: 2000}
    readers:
      validator: {fare: 200, currency: CNY}
    steps:
      - present: {card: alice, reader: validator}
      - expect: {outcome: accept, reason: paid, balance: 1800}

`load_scenario(path)` checks the whole file before anything runs: a typo in a key, an
unknown card or reader, a wrong type, an unreadable trace give a ScenarioError whose
message starts with "FILE:LINE:" and, for a misspelt key, lists the valid ones. The
keys, card types and steps are documented in docs/testing.md; SCHEMA below is the
authority.
"""
from __future__ import annotations

import difflib
import hashlib
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Callable

import yaml

from protocol import purse as p
from protocol.emv import luhn_valid

DEFAULT_NOW = datetime(2026, 11, 27, 8, 30, tzinfo=timezone.utc)
OUTCOMES = ("accept", "deny", "error")


class ScenarioError(ValueError):
    """A scenario file that cannot run; str() is "FILE:LINE: what is wrong"."""

    def __init__(self, path: str | Path, line: int | None, message: str):
        self.path, self.line, self.message = str(path), line, message
        super().__init__(f"{self.path}:{line}: {message}" if line else f"{self.path}: {message}")


# --- YAML with line numbers ------------------------------------------------------------

class Map(dict):
    """A YAML mapping that remembers the line of each key (1-based)."""
    line: int = 0
    key_lines: dict


class Seq(list):
    """A YAML sequence that remembers the line of each item."""
    line: int = 0
    item_lines: list


class _Loader(yaml.SafeLoader):
    path = "<scenario>"


def _construct_map(loader: _Loader, node: yaml.MappingNode) -> Map:
    loader.flatten_mapping(node)
    out = Map()
    out.line, out.key_lines = node.start_mark.line + 1, {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if not isinstance(key, str):
            raise ScenarioError(loader.path, line, f"keys are words, not {type(key).__name__} {key!r}")
        if key in out:
            raise ScenarioError(loader.path, line, f"{key!r} given twice (first at line {out.key_lines[key]})")
        out[key] = loader.construct_object(value_node, deep=True)
        out.key_lines[key] = line
    return out


def _construct_seq(loader: _Loader, node: yaml.SequenceNode) -> Seq:
    out = Seq(loader.construct_object(child, deep=True) for child in node.value)
    out.line, out.item_lines = node.start_mark.line + 1, [child.start_mark.line + 1 for child in node.value]
    return out


_Loader.add_constructor("tag:yaml.org,2002:map", _construct_map)
_Loader.add_constructor("tag:yaml.org,2002:seq", _construct_seq)


def load_yaml(text: str, path: str | Path = "<scenario>") -> Any:
    loader = _Loader(text)
    loader.path = str(path)
    try:
        return loader.get_single_data()
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        raise ScenarioError(path, mark.line + 1 if mark else None,
                            f"not valid YAML: {e.problem or e.context}") from None
    except yaml.YAMLError as e:
        raise ScenarioError(path, None, f"not valid YAML: {e}") from None
    finally:
        loader.dispose()


# --- the scenario model ----------------------------------------------------------------

@dataclass(frozen=True)
class CardSpec:
    name: str
    type: str  # purse, emv, uid, scripted, replay
    options: dict
    line: int


@dataclass(frozen=True)
class ReaderSpec:
    name: str
    fare: int
    currency: str
    terminal_id: bytes
    deny: tuple[str, ...]  # card names, card ids in hex, or tokens
    nonce: bytes | None
    line: int
    program: str = "tap"  # "tap": terminal.tap.tap alone; "validator": the bus validator program
    route: str = "R1"
    stop: str = "S1"
    repeat_window: float = 60.0  # seconds; validator only


@dataclass(frozen=True)
class Step:
    action: str  # present, expect, remove, tear_after, slow, wait
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

    def where(self, line: int) -> str:
        return f"{self.path}:{line}"


# --- checking values -------------------------------------------------------------------

class _Check:
    """The file, for error messages with line numbers."""

    def __init__(self, path: Path):
        self.path = path

    def fail(self, line: int | None, message: str):
        raise ScenarioError(self.path, line, message)

    def keys(self, mapping: Map, allowed: dict[str, Any], what: str, required: tuple[str, ...] = ()) -> None:
        for key in mapping:
            if key not in allowed:
                close = difflib.get_close_matches(key, list(allowed), n=1, cutoff=0.6)
                hint = f"did you mean {close[0]!r}? " if close else ""
                self.fail(mapping.key_lines[key], f"unknown key {key!r} in {what}: {hint}"
                                                  f"valid keys are {', '.join(allowed)}")
        for key in required:
            if key not in mapping:
                self.fail(mapping.line, f"{what} needs {key!r}")

    def mapping(self, value: Any, line: int, what: str) -> Map:
        if not isinstance(value, Map):
            self.fail(line, f"{what} must be a mapping (key: value), not {_kind(value)}")
        return value

    def integer(self, value: Any, line: int, what: str, low: int = 0, high: int | None = None) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(line, f"{what} must be a whole number{' (minor units)' if 'fare' in what or 'balance' in what or 'amount' in what else ''}, not {_kind(value)}")
        if value < low or (high is not None and value > high):
            self.fail(line, f"{what} must be {low}..{high}" if high is not None else f"{what} must be at least {low}")
        return value

    def number(self, value: Any, line: int, what: str, high: float = 60.0) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= high:
            self.fail(line, f"{what} must be a number of seconds 0..{high:g}, not {value!r}")
        return float(value)

    def text(self, value: Any, line: int, what: str) -> str:
        if not isinstance(value, str) or not value:
            self.fail(line, f"{what} must be text, not {_kind(value)}")
        return value

    def boolean(self, value: Any, line: int, what: str) -> bool:
        if not isinstance(value, bool):
            self.fail(line, f"{what} must be true or false, not {value!r}")
        return value

    def hex_bytes(self, value: Any, line: int, what: str, sizes: tuple[int, ...] | None = None) -> bytes:
        if not isinstance(value, str):
            self.fail(line, f"{what} must be hex text in quotes (e.g. \"04C0FFEE123456\"), not {_kind(value)}")
        try:
            raw = bytes.fromhex("".join(value.split()))
        except ValueError:
            self.fail(line, f"{what} {value!r} is not hex")
        if sizes and len(raw) not in sizes:
            self.fail(line, f"{what} must be {' or '.join(map(str, sizes))} bytes, got {len(raw)}")
        return raw

    def choice(self, value: Any, line: int, what: str, choices: tuple[str, ...]) -> str:
        if value not in choices:
            close = difflib.get_close_matches(str(value), choices, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            self.fail(line, f"{what} {value!r} is not known: {hint}use one of {', '.join(choices)}")
        return value


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, Map):
        return "a mapping"
    if isinstance(value, Seq):
        return "a list"
    return f"{type(value).__name__} {value!r}"


def _line(mapping: Map, key: str) -> int:
    return mapping.key_lines.get(key, mapping.line)


# --- cards -----------------------------------------------------------------------------

CARD_TYPES: dict[str, dict[str, str]] = {
    "purse": {"balance": "opening balance in minor units (default 2000)", "currency": "ISO 4217 (default CNY)",
              "card_id": "8 bytes hex (default from the card's name)", "uid": "hex", "locked": "true/false"},
    "emv": {"pan": "a test card number (default 4242424242424242)", "expiry": "YYMM", "uid": "hex",
            "holder": "cardholder name"},
    "uid": {"uid": "4, 7 or 10 bytes hex"},
    "scripted": {"uid": "hex", "answers": "pattern: answer (hex, or a list answered in turn)",
                 "default": "the answer when no pattern matches (default 6D00)",
                 "function": "module:function or file.py:function answering command bytes"},
    "replay": {"trace": "a trace file (terminal trace --out), relative to this file",
               "match": "shape (default) or exact", "strict": "fail on a command the trace lacks (default true)"},
}


def derived_bytes(name: str, prefix: bytes, size: int) -> bytes:
    """Bytes derived from a card's name, so distinct cards get distinct ids run after run."""
    return prefix + hashlib.sha256(name.encode()).digest()[:size - len(prefix)]


def _card(check: _Check, name: str, spec: Any, line: int) -> CardSpec:
    spec = check.mapping(spec, line, f"card {name!r}")
    if "type" not in spec:
        check.fail(spec.line, f"card {name!r} needs a type: one of {', '.join(CARD_TYPES)}")
    kind = check.choice(spec["type"], _line(spec, "type"), "card type", tuple(CARD_TYPES))
    check.keys(spec, {"type": None, **CARD_TYPES[kind]}, f"a card of type {kind}")
    at = lambda key: _line(spec, key)  # noqa: E731
    o: dict[str, Any] = {}
    if "uid" in spec:
        o["uid"] = check.hex_bytes(spec["uid"], at("uid"), "uid", (4, 7, 10))
    if kind == "purse":
        o["balance"] = check.integer(spec.get("balance", 2000), at("balance"), "balance", 0, p.MAX_BALANCE)
        o["currency"] = check.choice(spec.get("currency", "CNY"), at("currency"), "currency",
                                     tuple(sorted(p.CURRENCY_CODES)))
        o["card_id"] = (check.hex_bytes(spec["card_id"], at("card_id"), "card_id", (p.ID_SIZE,))
                        if "card_id" in spec else derived_bytes(name, b"TAP", p.ID_SIZE))
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
            check.fail(spec.line, f"card {name!r} of type uid needs 'uid'")
    elif kind == "scripted":
        o.setdefault("uid", derived_bytes(name, b"\x04", 7))
        o["rules"] = _answers(check, spec.get("answers", Map()), at("answers"))
        o["default"] = _answer(check, spec.get("default", "6D00"), at("default"), "default")
        if "function" in spec:
            o["function"] = _function(check, spec["function"], at("function"))
        if not o["rules"] and "function" not in o and "default" not in spec:
            check.fail(spec.line, f"scripted card {name!r} needs answers, a default or a function")
    elif kind == "replay":
        if "trace" not in spec:
            check.fail(spec.line, f"card {name!r} of type replay needs 'trace'")
        path = check.path.parent / check.text(spec["trace"], at("trace"), "trace")
        from terminal.trace import TraceError, read_trace

        try:
            o["sessions"] = read_trace(path)
        except TraceError as e:
            check.fail(at("trace"), str(e))
        o["trace"] = path
        o["match"] = check.choice(spec.get("match", "shape"), at("match"), "match", ("shape", "exact"))
        o["strict"] = check.boolean(spec.get("strict", True), at("strict"), "strict")
    return CardSpec(name, kind, o, line)


def _answer(check: _Check, value: Any, line: int, what: str) -> bytes:
    from tapstack.testing.cards import PatternError, answer_bytes

    try:
        return answer_bytes(value if isinstance(value, str) else _not_hex(check, value, line, what), what)
    except PatternError as e:
        check.fail(line, str(e))


def _not_hex(check: _Check, value: Any, line: int, what: str):
    check.fail(line, f"{what} must be hex text in quotes (e.g. \"6A82\"), not {_kind(value)}")


def _answers(check: _Check, value: Any, line: int) -> list[tuple[str, list[bytes]]]:
    from tapstack.testing.cards import PatternError, compile_pattern

    value = check.mapping(value, line, "answers")
    rules = []
    for pattern, answer in value.items():
        at = value.key_lines[pattern]
        try:
            compile_pattern(pattern)
        except PatternError as e:
            check.fail(at, str(e))
        answers = answer if isinstance(answer, Seq) else [answer]
        if not answers:
            check.fail(at, f"pattern {pattern!r}: an empty list of answers")
        rules.append((pattern, [_answer(check, a, at, f"the answer to {pattern}") for a in answers]))
    return rules


def _function(check: _Check, value: Any, line: int) -> Callable[[bytes], bytes]:
    import importlib
    import importlib.util

    spec = check.text(value, line, "function")
    module_name, _, attr = spec.rpartition(":")
    if not module_name or not attr:
        check.fail(line, f"function {spec!r}: write module:function or file.py:function")
    try:
        if module_name.endswith(".py"):
            path = check.path.parent / module_name
            loader_spec = importlib.util.spec_from_file_location(f"tapstack_scenario_{path.stem}", path)
            if loader_spec is None or not path.exists():
                check.fail(line, f"function {spec!r}: no file {path}")
            module = importlib.util.module_from_spec(loader_spec)
            loader_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
        function = getattr(module, attr)
    except ScenarioError:
        raise
    except Exception as e:  # the user's module: whatever it raises, say so in one line
        check.fail(line, f"function {spec!r} cannot be loaded: {type(e).__name__}: {e}")
    if not callable(function):
        check.fail(line, f"function {spec!r} is not callable")
    return function


# --- readers ---------------------------------------------------------------------------

READER_KEYS = {"fare": "minor units (default 200)", "currency": "ISO 4217 (default CNY)",
               "terminal_id": "8 ASCII characters (default TERM0001)", "deny": "card names, card ids or tokens",
               "nonce": "8 bytes hex: every tap's transaction id (default random)",
               "program": "tap (the tap decision alone, default) or validator (the bus validator: "
                          "repeat taps, journal)",
               "route": "validator: its route (default R1)", "stop": "validator: its stop (default S1)",
               "repeat_window": "validator: seconds within which a second tap is refused (default 60)"}
VALIDATOR_ONLY = ("route", "stop", "repeat_window")


def _reader(check: _Check, name: str, spec: Any, line: int) -> ReaderSpec:
    spec = Map() if spec is None else check.mapping(spec, line, f"reader {name!r}")
    check.keys(spec, READER_KEYS, f"reader {name!r}")
    at = lambda key: _line(spec, key) if spec else line  # noqa: E731
    fare = check.integer(spec.get("fare", 200), at("fare"), "fare", 1, p.MAX_AMOUNT)
    currency = check.choice(spec.get("currency", "CNY"), at("currency"), "currency", tuple(sorted(p.CURRENCY_CODES)))
    tid = check.text(spec.get("terminal_id", "TERM0001"), at("terminal_id"), "terminal_id")
    if not (tid.isascii() and len(tid) == p.ID_SIZE):
        check.fail(at("terminal_id"), f"terminal_id must be {p.ID_SIZE} ASCII characters, not {tid!r}")
    deny = spec.get("deny", Seq())
    if not isinstance(deny, list) or not all(isinstance(d, str) for d in deny):
        check.fail(at("deny"), "deny must be a list of card names, card ids (hex) or tokens")
    nonce = check.hex_bytes(spec["nonce"], at("nonce"), "nonce", (p.NONCE_SIZE,)) if "nonce" in spec else None
    program = check.choice(spec.get("program", "tap"), at("program"), "program", ("tap", "validator"))
    if program == "tap":
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

EXPECT_KEYS = {"outcome": "accept, deny or error", "kind": "purse, emv, uid, unknown or error",
               "reason": "paid, recovered, token, insufficient_balance, deny_listed, card_removed, ...",
               "balance": "the purse card's balance now", "balance_after": "the balance the receipt states",
               "amount": "debited", "token": "a card's name (its token), a token, or null",
               "pending": "unfinished debits the reader keeps", "apdus": "command APDUs of the tap",
               "message": "validator: what the rider reads", "journalled": "validator: taps in its journal",
               "reader": "whose last tap (default: the last tap)"}
ACTIONS = ("present", "expect", "remove", "tear_after", "slow", "wait", "advance")
KINDS = ("purse", "emv", "uid", "unknown", "error")


def _step(check: _Check, action: str, value: Any, line: int, cards, readers, source: str) -> Step:
    def reader_of(mapping: Map | None, key_line: int) -> str | None:
        name = mapping.get("reader") if mapping else None
        if name is None:
            return None
        if name not in readers:
            check.fail(key_line, f"unknown reader {name!r}: the readers are {', '.join(readers)}")
        return name

    args: dict[str, Any] = {}
    if action == "present":
        if isinstance(value, str):
            value = Map(card=value)
            value.line, value.key_lines = line, {"card": line}
        value = check.mapping(value, line, "present")
        check.keys(value, {"card": None, "reader": None}, "present", required=("card",))
        if value["card"] not in cards:
            close = difflib.get_close_matches(str(value["card"]), list(cards), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            check.fail(_line(value, "card"), f"unknown card {value['card']!r}: {hint}"
                                             f"the cards are {', '.join(cards) or '(none declared)'}")
        args = {"card": value["card"], "reader": reader_of(value, _line(value, "reader"))}
    elif action == "expect":
        value = check.mapping(value, line, "expect")
        check.keys(value, EXPECT_KEYS, "expect")
        if not value:
            check.fail(line, "expect needs at least one of " + ", ".join(EXPECT_KEYS))
        for key, v in value.items():
            at = _line(value, key)
            if key == "outcome":
                check.choice(v, at, "outcome", OUTCOMES)
            elif key == "kind":
                check.choice(v, at, "kind", KINDS)
            elif key in ("balance", "balance_after", "amount", "pending", "apdus", "journalled"):
                check.integer(v, at, key)
            elif key in ("reason", "message"):
                check.text(v, at, key)
            elif key == "token" and v is not None:
                check.text(v, at, "token")
        args = dict(value)
        args["reader"] = reader_of(value, _line(value, "reader"))
    elif action in ("remove", "wait") and value is None:
        pass
    elif action == "remove":
        if isinstance(value, str):
            value = Map(reader=value)
            value.line, value.key_lines = line, {"reader": line}
        value = check.mapping(value, line, "remove")
        check.keys(value, {"reader": None}, "remove")
        args = {"reader": reader_of(value, line)}
    elif action == "wait":
        args = {"seconds": check.number(value, line, "wait")}
    elif action == "advance":
        args = {"seconds": check.number(value, line, "advance", 366 * 86400)}
    elif action in ("tear_after", "slow"):
        key = "n" if action == "tear_after" else "seconds"
        if not isinstance(value, Map):
            value = Map({key: value})
            value.line, value.key_lines = line, {key: line}
        check.keys(value, {key: None, "reader": None}, action, required=(key,))
        at = _line(value, key)
        if action == "tear_after":
            args = {"n": check.integer(value[key], at, "tear_after", 1, 1000)}
        else:
            args = {"seconds": check.number(value[key], at, "slow", 5.0)}
        args["reader"] = reader_of(value, _line(value, "reader"))
    return Step(action, args, line, source)


def _steps(check: _Check, value: Any, line: int, cards, readers, lines: list[str]) -> list[Step]:
    if not isinstance(value, Seq) or not value:
        check.fail(line, "steps must be a list of steps (- present: ..., - expect: ...)")
    steps = []
    for item, at in zip(value, value.item_lines):
        source = lines[at - 1].strip() if 0 < at <= len(lines) else ""
        if isinstance(item, str):
            if item in ACTIONS and item not in ("remove", "wait"):
                check.fail(at, f"step {item!r} needs a value: - {item}: ...")
            if item not in ("remove", "wait"):
                close = difflib.get_close_matches(item, ACTIONS, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                check.fail(at, f"unknown step {item!r}: {hint}steps are {', '.join(ACTIONS)}")
            steps.append(_step(check, item, None, at, cards, readers, source))
            continue
        item = check.mapping(item, at, "a step")
        check.keys(item, {a: None for a in ACTIONS}, "a step")
        for action, args in item.items():  # several actions in one item run in the order written
            key_line = item.key_lines[action]
            text = lines[key_line - 1].strip() if 0 < key_line <= len(lines) else source
            steps.append(_step(check, action, args, key_line, cards, readers, text))
    return steps


# --- the file --------------------------------------------------------------------------

TOP_KEYS = {"scenario": "its name", "description": "what it shows", "now": "the terminal's clock, UTC",
            "transports": "run only over these (mock, pcscd, nfcpy)", "cards": "the cards by name",
            "readers": "the readers by name", "steps": "what happens, in order"}


def parse_scenario(text: str, path: str | Path) -> Scenario:
    path = Path(path)
    check = _Check(path)
    doc = load_yaml(text, path)
    if doc is None:
        check.fail(None, "the file is empty")
    doc = check.mapping(doc, 1, "a scenario file")
    check.keys(doc, TOP_KEYS, "a scenario", required=("steps",))
    at = lambda key: _line(doc, key)  # noqa: E731
    name = check.text(doc.get("scenario", path.stem), at("scenario"), "scenario")
    now = doc.get("now", DEFAULT_NOW)
    if isinstance(now, str):
        try:
            now = datetime.fromisoformat(now.replace("Z", "+00:00"))
        except ValueError:
            check.fail(at("now"), f"now must be a UTC time like 2026-11-27T08:30:00Z, not {now!r}")
    if isinstance(now, date) and not isinstance(now, datetime):
        now = datetime(now.year, now.month, now.day, tzinfo=timezone.utc)
    if not isinstance(now, datetime):
        check.fail(at("now"), f"now must be a UTC time like 2026-11-27T08:30:00Z, not {_kind(now)}")
    now = now.replace(tzinfo=timezone.utc) if now.tzinfo is None else now.astimezone(timezone.utc)

    transports = None
    if "transports" in doc:
        from tapstack.testing.fields import parse_transports

        raw = doc["transports"]
        try:
            transports = tuple(parse_transports(raw if isinstance(raw, (str, list)) else str(raw)))
        except ValueError as e:
            check.fail(at("transports"), str(e))

    cards_doc = doc.get("cards", Map())
    cards_doc = check.mapping(cards_doc, at("cards"), "cards") if cards_doc is not None else Map()
    cards = {n: _card(check, n, spec, cards_doc.key_lines[n]) for n, spec in cards_doc.items()}
    readers_doc = doc.get("readers")
    if readers_doc is None:
        readers = {"reader": _reader(check, "reader", None, at("steps"))}
    else:
        readers_doc = check.mapping(readers_doc, at("readers"), "readers")
        if not readers_doc:
            check.fail(at("readers"), "readers: declare at least one, or leave the key out for one default reader")
        readers = {n: _reader(check, n, spec, readers_doc.key_lines[n]) for n, spec in readers_doc.items()}
    for r in readers.values():
        for entry in r.deny:
            if entry not in cards and not re.fullmatch(r"[0-9A-Fa-f]{16}|(pan|uid)_\w+", entry):
                check.fail(r.line, f"reader {r.name!r} denies {entry!r}: not a card name, a card id "
                                   "(16 hex digits) or a token")
    lines = text.splitlines()
    steps = _steps(check, doc["steps"], at("steps"), cards, readers, lines)
    for step in steps:
        if step.action == "present" and step.args["reader"] is None and len(readers) > 1:
            check.fail(step.line, f"present: which reader? there are {', '.join(readers)}")
    description = doc.get("description", "")
    return Scenario(path, name, now, cards, readers, steps, transports, str(description or ""), lines)


def load_scenario(path: str | Path) -> Scenario:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ScenarioError(path, None, f"cannot read: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise ScenarioError(path, None, "not a UTF-8 text file") from None
    return parse_scenario(text, path)


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
