"""Scripted cards: a virtual card that answers by APDU patterns, or by a Python function.

    card = ScriptedCard(bytes.fromhex("04A1B2C3D4E5F6"), [
        ("00A40400*", "6A82"),                 # any SELECT by name: not found
        ("80CA9F7F00", ["9F7F0100" "9000", "6985"]),  # answered in turn, the last one repeats
        ("80??0000*", lambda command: b"\x90\x00"),
    ], default="6D00")

A pattern is the command in hex: `?` matches any one hex digit, `*` any number of bytes
(zero included); spaces are ignored. The first rule that matches answers. With no rule
matching, FF CA 00 00 00 gets the UID (as any contactless card on a PC/SC reader) and
anything else `default`. A function gets the command bytes and returns the response
bytes; whatever it raises is answered 6F00 and kept in `errors`. `process` never raises.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from protocol.apdu import SW_OK, SW_UNKNOWN, respond
from wallet.card import DEFAULT_ATR

GET_UID = bytes.fromhex("FFCA000000")
Answer = bytes | str | Sequence[bytes | str] | Callable[[bytes], bytes]


class PatternError(ValueError):
    """A pattern or an answer that is not what a scripted card can use."""


def compile_pattern(pattern: str) -> re.Pattern:
    """A command pattern ("00A40400*", "80??0000*") as a regular expression over upper hex."""
    text = "".join(pattern.split()).upper()
    if not text:
        raise PatternError("an empty pattern matches no command")
    bad = sorted(set(text) - set("0123456789ABCDEF?*"))
    if bad:
        raise PatternError(f"pattern {pattern!r}: {''.join(bad)!r} is neither hex, '?' nor '*'")
    parts, run = [], ""
    for c in text:
        if c == "*":
            if len(run.replace("?", "0")) % 2:
                raise PatternError(f"pattern {pattern!r}: '*' must start at a byte boundary")
            parts.append(_run(run) + "(?:[0-9A-F]{2})*")
            run = ""
        else:
            run += c
    if len(run.replace("?", "0")) % 2:
        raise PatternError(f"pattern {pattern!r} has an odd number of hex digits")
    parts.append(_run(run))
    return re.compile("".join(parts))


def _run(run: str) -> str:
    return "".join("[0-9A-F]" if c == "?" else c for c in run)


def answer_bytes(answer: bytes | str, where: str = "answer") -> bytes:
    """An answer in hex (or bytes): data and a status word, at least 2 bytes."""
    if isinstance(answer, str):
        try:
            answer = bytes.fromhex("".join(answer.split()))
        except ValueError:
            raise PatternError(f"{where} {answer!r} is not hex") from None
    answer = bytes(answer)
    if len(answer) < 2:
        raise PatternError(f"{where} needs at least a status word (2 bytes), got {len(answer)}")
    return answer


@dataclass
class Rule:
    pattern: str
    regex: re.Pattern
    answers: list[bytes] | None = None  # in turn, the last repeats
    function: Callable[[bytes], bytes] | None = None
    used: int = 0

    @classmethod
    def of(cls, pattern: str, answer: Answer) -> "Rule":
        regex = compile_pattern(pattern)
        if callable(answer):
            return cls(pattern, regex, function=answer)
        if isinstance(answer, (bytes, bytearray, str)):
            return cls(pattern, regex, [answer_bytes(answer)])
        answers = [answer_bytes(a) for a in answer]
        if not answers:
            raise PatternError(f"pattern {pattern!r}: an empty list of answers")
        return cls(pattern, regex, answers)

    def answer(self, command: bytes) -> bytes:
        self.used += 1
        if self.function is not None:
            return bytes(self.function(command))
        return self.answers[min(self.used, len(self.answers)) - 1]


class ScriptedCard:
    """A card answering by rules; fits wherever a wallet.card.VirtualCard goes."""

    def __init__(self, uid: bytes, rules: Sequence[tuple[str, Answer]] | Sequence[Rule] = (),
                 default: bytes | str = "6D00", atr: bytes = DEFAULT_ATR, name: str = "scripted card"):
        self.uid = bytes(uid)
        self.rules = [r if isinstance(r, Rule) else Rule.of(*r) for r in rules]
        self.default = answer_bytes(default, "default answer")
        self.atr = bytes(atr)
        self.name = name
        self.errors = []
        self.commands = []

    def power_on(self) -> bytes:
        return self.atr

    reset = power_on

    def power_off(self) -> None:
        pass

    def process(self, raw: bytes) -> bytes:
        raw = bytes(raw)
        self.commands.append(raw)
        text = raw.hex().upper()
        for rule in self.rules:
            if rule.regex.fullmatch(text):
                try:
                    response = rule.answer(raw)
                except Exception as e:  # the card must answer something, as a real one would
                    self.errors.append(f"{rule.pattern}: {type(e).__name__}: {e}")
                    return respond(SW_UNKNOWN)
                if len(response) < 2:
                    self.errors.append(f"{rule.pattern}: answered {len(response)} bytes, no status word")
                    return respond(SW_UNKNOWN)
                return response
        if raw == GET_UID:
            return respond(SW_OK, self.uid)
        return self.default
