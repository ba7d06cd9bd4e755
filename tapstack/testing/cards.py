"""Cards a user describes: scripted answers, or a Python class with the card's logic.

    card = ScriptedCard(bytes.fromhex("04A1B2C3D4E5F6"), [
        ("00A40400*", "6A82"),                        # any SELECT by name: not found
        ("80CA9F7F00", ["9F7F0100" "9000", "6985"]),  # answered in turn, the last one repeats
        Rule.of("80??0000*", lambda command: b"\x90\x00"),
        Rule.of({"regex": "80B2..0C.*"}, "6A83"),     # a regular expression, as Keyple's stub plugin
        Rule.of("0020000004*", "9000", state="locked", then="open"),  # only when locked; then open
    ], default="6D00", state="locked")

A rule matches the command (a hex pattern, see tapstack.testing.expect, or a regex) and,
when it names states, only while the card is in one of them; `then` moves the card to
another state. The first rule that matches answers. With `ordered=True` the rules are a
script: each command must match the next rule (which answers `times` commands, 1 by
default); a command out of turn is answered `default` and kept in `mismatches`.
With no rule matching, FF CA 00 00 00 gets the UID (as any contactless card on a PC/SC
reader) and anything else `default`.

A card with logic is a class (as a jCardSim applet):

    class ClubCard(Card):
        atr = "3B8180018080"
        protocol = "T=0"
        def __init__(self, points=0):
            self.points = points
        def process(self, command):           # a protocol.apdu.CommandAPDU
            if command.ins == 0xB0:
                return respond(SW_OK, self.points.to_bytes(2, "big"))
            return respond(SW_INS_NOT_SUPPORTED)

A T=0 card answers data of a command that carried data with 61xx (the reader fetches it
with GET RESPONSE) and a wrong Le with 6Cxx (the reader sends the command again), as
such cards do; the readers of every transport complete both, as a PC/SC application
would. Whatever a rule's function or a class raises is answered 6F00 and kept in
`errors`: the scenario step that caused it fails with it. `process` never raises.

A card image (`image(card)`, `save_card`, `load_card`) is the card's description with
its state now, written as YAML: load it to go on where the card was.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from protocol.apdu import (SW_OK, SW_UNKNOWN, SW_WRONG_LENGTH, CommandAPDU, MalformedAPDU, parse_command,
                           respond)
from tapstack.testing.expect import Pattern, PatternError, hex_bytes, hex_pattern, pattern_of
from wallet.card import DEFAULT_ATR

GET_UID = bytes.fromhex("FFCA000000")
# A T=0 card's ATR: TS 3B, T0 00 (no interface bytes, so T=0 only, and no historical bytes).
T0_ATR = bytes.fromhex("3B00")
PROTOCOLS = ("T=0", "T=1")
Answer = bytes | str | Sequence[bytes | str] | Callable[[bytes], bytes]

__all__ = ["Card", "PatternError", "Rule", "ScriptedCard", "answer_bytes", "compile_pattern", "image",
           "load_class", "PythonCard", "respond"]


def compile_pattern(pattern: str):
    """A command pattern ("00A40400*", "80??0000*") as a regular expression over upper hex."""
    return hex_pattern(pattern).regex


def answer_bytes(answer: bytes | str, where: str = "answer") -> bytes:
    """An answer in hex (or bytes): data and a status word, at least 2 bytes."""
    answer = hex_bytes(answer, where) if isinstance(answer, str) else bytes(answer)
    if len(answer) < 2:
        raise PatternError(f"{where} needs at least a status word (2 bytes), got {len(answer)}")
    return answer


def _as_bytes(value: bytes | str, what: str) -> bytes:
    return hex_bytes(value, what) if isinstance(value, str) else bytes(value)


# --- T=0 -------------------------------------------------------------------------------

class T0:
    """The answers of a T=0 card around its logic: 61xx then GET RESPONSE, 6Cxx for a wrong Le."""

    def __init__(self):
        self.rest = b""  # data still to fetch with GET RESPONSE
        self.sw = b""
        self.wrong_le: tuple[bytes, bytes] | None = None  # (header, response) awaiting the right Le

    def reset(self) -> None:
        self.rest, self.sw, self.wrong_le = b"", b"", None

    def process(self, raw: bytes, logic: Callable[[bytes], bytes]) -> bytes:
        try:
            command = parse_command(raw)
        except MalformedAPDU:
            return logic(raw)
        if command.ins == 0xC0 and command.cla & 0x80 == 0 and self.rest:
            n = command.le or 256
            chunk, self.rest = self.rest[:n], self.rest[n:]
            return chunk + (self._more() if self.rest else self.sw)
        if self.wrong_le is not None and self.wrong_le[0] == raw[:4] and command.le == len(self.wrong_le[1]) - 2:
            response, self.wrong_le = self.wrong_le[1], None
            return response  # the command again with the right Le: the answer computed before
        self.reset()
        response = logic(raw)
        data = response[:-2]
        if not data:
            return response
        if command.data or command.le is None:  # cases 3 and 4 (and 1): the data waits for GET RESPONSE
            self.rest, self.sw = data, response[-2:]
            return self._more()
        if command.le != len(data) and len(data) < 256:  # case 2 with the wrong Le
            self.wrong_le = (raw[:4], response)
            return bytes((0x6C, len(data)))
        return response

    def _more(self) -> bytes:
        return bytes((0x61, min(len(self.rest), 256) & 0xFF))


# --- scripted cards --------------------------------------------------------------------

@dataclass
class Rule:
    matcher: Pattern
    answers: list[bytes] | None = None  # in turn, the last repeats
    function: Callable[[bytes], bytes] | None = None
    states: tuple[str, ...] = ()  # only in these states (any when empty)
    then: str | None = None  # the state after answering
    times: int = 1  # ordered scripts: commands this rule answers before the next rule's turn
    line: int = 0  # where the file wrote it
    used: int = 0

    @classmethod
    def of(cls, pattern, answer: Answer, state: str | Sequence[str] | None = None, then: str | None = None,
           times: int = 1, line: int = 0) -> "Rule":
        matcher = pattern if isinstance(pattern, Pattern) else pattern_of(pattern, "command")
        states = (state,) if isinstance(state, str) else tuple(state or ())
        common = dict(states=states, then=then, times=times, line=line)
        if callable(answer):
            return cls(matcher, function=answer, **common)
        if isinstance(answer, (bytes, bytearray, str)):
            return cls(matcher, [answer_bytes(answer)], **common)
        answers = [answer_bytes(a) for a in answer]
        if not answers:
            raise PatternError(f"command {matcher}: an empty list of answers")
        return cls(matcher, answers, **common)

    def applies(self, command: bytes, state: str | None) -> bool:
        return (not self.states or state in self.states) and self.matcher.matches(command)

    def answer(self, command: bytes) -> bytes:
        self.used += 1
        if self.function is not None:
            return bytes(self.function(command))
        return self.answers[min(self.used, len(self.answers)) - 1]

    def describe(self) -> str:
        where = f" (line {self.line})" if self.line else ""
        when = f" in state {'/'.join(self.states)}" if self.states else ""
        return f"{self.matcher}{when}{where}"


class _Runtime:
    """What every described card shares: the UID and ATR, T=0, errors kept, never raising."""

    uid: bytes
    atr: bytes
    protocol: str
    name: str

    def _setup(self, uid, atr, protocol: str, name: str) -> None:
        if protocol not in PROTOCOLS:
            raise PatternError(f"protocol {protocol!r}: use T=0 or T=1")
        self.uid = _as_bytes(uid, "uid")
        self.protocol = protocol
        self.atr = _as_bytes(atr, "atr") if atr is not None else (T0_ATR if protocol == "T=0" else DEFAULT_ATR)
        self.name = name
        self.errors: list[str] = []
        self.mismatches: list[str] = []
        self.commands: list[bytes] = []
        self._t0 = T0() if protocol == "T=0" else None

    def power_on(self) -> bytes:
        if self._t0 is not None:
            self._t0.reset()
        self._session_start()
        return self.atr

    reset = power_on

    def power_off(self) -> None:
        pass

    def _session_start(self) -> None:
        pass

    def process(self, raw: bytes) -> bytes:
        raw = bytes(raw)
        self.commands.append(raw)
        if self._t0 is not None:
            return self._t0.process(raw, self._safe)
        return self._safe(raw)

    def _safe(self, raw: bytes) -> bytes:
        try:
            response = bytes(self._logic(raw))
        except Exception as e:  # the card must answer something, as a real one would
            self.errors.append(f"{raw.hex().upper()}: {_where(e)}{type(e).__name__}: {e}")
            return respond(SW_UNKNOWN)
        if len(response) < 2:
            self.errors.append(f"{raw.hex().upper()}: answered {len(response)} bytes, no status word")
            return respond(SW_UNKNOWN)
        return response

    def _logic(self, raw: bytes) -> bytes:
        raise NotImplementedError


def _where(error: Exception) -> str:
    """ "file.py:12 in name: " for the innermost frame of the user's code that raised."""
    frames = [f for f in traceback.extract_tb(error.__traceback__) if "tapstack/testing" not in f.filename]
    if not frames:
        return ""
    f = frames[-1]
    return f"{Path(f.filename).name}:{f.lineno} in {f.name}: "


class ScriptedCard(_Runtime):
    """A card answering by rules; fits wherever a wallet.card.VirtualCard goes."""

    def __init__(self, uid: bytes | str, rules: Sequence[tuple] | Sequence[Rule] = (),
                 default: bytes | str = "6D00", atr: bytes | str | None = None, name: str = "scripted card",
                 protocol: str = "T=1", state: str | None = None, ordered: bool = False):
        self._setup(uid, atr, protocol, name)
        self.rules = [r if isinstance(r, Rule) else Rule.of(*r) for r in rules]
        self.default = answer_bytes(default, "default answer")
        self.state = state
        self.ordered = ordered
        self.turn = 0  # ordered: the rule whose turn it is
        self._in_turn = 0

    def _logic(self, raw: bytes) -> bytes:
        if self.ordered:
            return self._next_in_script(raw)
        rule = next((r for r in self.rules if r.applies(raw, self.state)), None)
        if rule is not None:
            return self._answer(rule, raw)
        if raw == GET_UID:
            return respond(SW_OK, self.uid)
        return self.default

    def _answer(self, rule: Rule, raw: bytes) -> bytes:
        response = rule.answer(raw)
        if rule.then is not None:
            self.state = rule.then
        return response

    def _next_in_script(self, raw: bytes) -> bytes:
        if raw == GET_UID and not (self.turn < len(self.rules) and self.rules[self.turn].applies(raw, self.state)):
            return respond(SW_OK, self.uid)  # the reader asks for the UID whatever the script says
        if self.turn >= len(self.rules):
            self.mismatches.append(f"{raw.hex().upper()}: the script had ended (all {len(self.rules)} "
                                   "commands answered)")
            return self.default
        rule = self.rules[self.turn]
        if not rule.applies(raw, self.state):
            self.mismatches.append(f"{raw.hex().upper()}: the script expected {rule.describe()}")
            return self.default
        self._in_turn += 1
        if self._in_turn >= rule.times:
            self.turn, self._in_turn = self.turn + 1, 0
        return self._answer(rule, raw)

    def image_state(self) -> dict:
        state = {"used": [r.used for r in self.rules]}
        if self.state is not None:
            state["state"] = self.state
        if self.ordered:
            state["turn"] = self.turn
        return state

    def load_state(self, doc: dict) -> None:
        for rule, used in zip(self.rules, doc.get("used", ())):
            rule.used = int(used)
        self.state = doc.get("state", self.state)
        self.turn = int(doc.get("turn", self.turn))


# --- cards with logic in Python --------------------------------------------------------

class Card:
    """Base class of a card written in Python: override `process` (and `reset`, `image`).

    Class attributes (or instance ones) give what the reader sees: `uid` (hex or bytes),
    `atr` (default: the contactless ATR, or a T=0 one), `protocol` ("T=0" or "T=1").
    `process(command)` gets a protocol.apdu.CommandAPDU (`.cla .ins .p1 .p2 .data .le`,
    `bytes(command)`) and returns the response bytes: `respond(sw, data)`. A malformed
    command is answered 6700 and FF CA 00 00 00 the UID before `process` is called.
    `reset()` runs at each power-on (a new tap): forget what lasts one session.
    `image()` is the state to save (default: the public attributes), `load_image(doc)` puts
    it back.
    """

    uid: bytes | str = "04A1B2C3D4E5F6"
    atr: bytes | str | None = None
    protocol: str = "T=1"

    def reset(self) -> None:
        """A new session (power-on): nothing by default."""

    def process(self, command: CommandAPDU) -> bytes:
        raise NotImplementedError("a Card subclass answers commands in process(command)")

    def image(self) -> dict:
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    def load_image(self, doc: dict) -> None:
        for key, value in doc.items():
            setattr(self, key, value)


class PythonCard(_Runtime):
    """A Card subclass instance (or any object with process(command)) on the card runtime."""

    def __init__(self, program, name: str | None = None, uid: bytes | str | None = None,
                 atr: bytes | str | None = None, protocol: str | None = None):
        self.program = program
        self._setup(uid if uid is not None else getattr(program, "uid", Card.uid),
                    atr if atr is not None else getattr(program, "atr", None),
                    protocol or getattr(program, "protocol", "T=1"), name or type(program).__name__)

    def _session_start(self) -> None:
        reset = getattr(self.program, "reset", None)
        if callable(reset):
            try:
                reset()
            except Exception as e:  # kept and reported at the step, as a command's error
                self.errors.append(f"power-on: {_where(e)}{type(e).__name__}: {e}")

    def _logic(self, raw: bytes) -> bytes:
        try:
            command = parse_command(raw)
        except MalformedAPDU:
            return respond(SW_WRONG_LENGTH)
        if raw == GET_UID:
            return respond(SW_OK, self.uid)
        return self.program.process(command)

    def image_state(self) -> dict:
        get = getattr(self.program, "image", None)
        return dict(get()) if callable(get) else {}

    def load_state(self, doc: dict) -> None:
        put = getattr(self.program, "load_image", None)
        if callable(put):
            put(dict(doc))


def load_class(spec: str, base: Path | None = None):
    """The object named by "module:Name" or "file.py:Name" (a file relative to base)."""
    module_name, _, attr = spec.rpartition(":")
    if not module_name or not attr:
        raise PatternError(f"{spec!r}: write module:name or file.py:name")
    if module_name.endswith(".py"):
        path = (base or Path.cwd()) / module_name
        if not path.is_file():
            raise PatternError(f"{spec!r}: no file {path}")
        key = f"tapstack_user_{path.resolve().with_suffix('').as_posix().replace('/', '_')}"
        module = sys.modules.get(key)
        if module is None:
            loader_spec = importlib.util.spec_from_file_location(key, path)
            module = importlib.util.module_from_spec(loader_spec)
            sys.modules[key] = module  # dataclasses and pickling look modules up by name
            try:
                loader_spec.loader.exec_module(module)
            except BaseException:
                del sys.modules[key]
                raise
    else:
        module = importlib.import_module(module_name)
    try:
        return getattr(module, attr)
    except AttributeError:
        raise PatternError(f"{spec!r}: {module_name} has no {attr!r}") from None


# --- images ----------------------------------------------------------------------------

def image(card, description: dict) -> dict:
    """The card's description with its state now: load it to go on where the card was."""
    doc = {k: v for k, v in description.items() if k != "image"}
    get = getattr(card, "image_state", None)
    state = get() if callable(get) else None
    if state:
        doc["image"] = state
    return doc
