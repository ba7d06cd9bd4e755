"""What a reader step checks in a card's answer and captures from it: pure functions over bytes.

Hex patterns, for commands, status words and data alike:

    "9000"  "6A82"           exactly these bytes (spaces are ignored)
    "6Axx"  "63Cx"  "80??"   x, X or ? is any one hex digit
    "6F * 9000"  "00A40400*" * is any number of whole bytes (none included)

A regular expression (Keyple's stub plugin matches commands this way) is written as
{regex: "..."} and must match the whole answer written as upper-case hex without spaces.

    find_tlv(data, "6F/84")   the value at a path of BER-TLV tags ("9F7F" alone: anywhere)
    capture(answer, source)   data, sw, data[2:6], {tlv: 9F7F} or {regex: "..(....)"}
    substitute(text, values)  "80CA00{tag}00" with the values captured before

Variables in hex text are {name}; a captured value is upper-case hex.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from protocol import tlv
from protocol.apdu import ResponseAPDU, sw_name
from terminal.trace import hex_problem

VARIABLE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
WILDCARDS = "?xX"


class PatternError(ValueError):
    """A pattern, a capture or an answer the kit cannot use; the message says why."""


def hex_bytes(text: str, what: str = "hex") -> bytes:
    """Bytes from hex text with spaces; PatternError saying what is wrong otherwise."""
    problem = hex_problem(text)
    if problem:
        raise PatternError(f"{what} {text!r}: {problem}")
    return bytes.fromhex("".join(text.split()))


@dataclass(frozen=True)
class Pattern:
    """A hex pattern or a regular expression over upper-case hex, as written in the file."""
    text: str
    regex: re.Pattern

    def matches(self, value: bytes) -> bool:
        return self.regex.fullmatch(value.hex().upper()) is not None

    def __str__(self) -> str:
        return self.text


def hex_pattern(text: str, what: str = "pattern") -> Pattern:
    """A pattern of hex digits, x/X/? (any digit) and * (any whole bytes)."""
    compact = "".join(text.split()).upper().replace("X", "?")
    if not compact:
        raise PatternError(f"{what}: an empty pattern matches nothing")
    bad = sorted(set(compact) - set("0123456789ABCDEF?*"))
    if bad:
        raise PatternError(f"{what} {text!r}: {''.join(bad)!r} is neither hex, x, '?' nor '*'")
    parts, run = [], ""
    for c in compact:
        if c == "*":
            if len(run) % 2:
                raise PatternError(f"{what} {text!r}: '*' must stand for whole bytes, after an even number "
                                   "of hex digits")
            parts.append(_digits(run) + "(?:[0-9A-F]{2})*")
            run = ""
        else:
            run += c
    if len(run) % 2:
        raise PatternError(f"{what} {text!r}: odd number of hex digits: each byte is two digits")
    parts.append(_digits(run))
    return Pattern(text, re.compile("".join(parts)))


def _digits(run: str) -> str:
    return "".join("[0-9A-F]" if c == "?" else c for c in run)


def regex_pattern(text: str, what: str = "regex") -> Pattern:
    """A regular expression over the upper-case hex of the bytes (case does not matter)."""
    try:
        return Pattern(f"regex {text}", re.compile(text, re.IGNORECASE))
    except re.error as e:
        raise PatternError(f"{what} {text!r} is not a regular expression: {e}") from None


def pattern_of(value, what: str) -> Pattern:
    """A pattern from a file value: hex text, or {regex: ...}."""
    if isinstance(value, dict):
        if set(value) != {"regex"} or not isinstance(value["regex"], str):
            raise PatternError(f"{what}: write hex text in quotes, or {{regex: \"...\"}}")
        return regex_pattern(value["regex"], what)
    if hasattr(value, "text") and isinstance(value, int):
        value = value.text  # sw: 9000 written without quotes, as written (0102 is not 66)
    if not isinstance(value, str):
        raise PatternError(f"{what} must be hex text in quotes (e.g. \"9000\") or {{regex: \"...\"}}, "
                           f"not {type(value).__name__} {value!r}")
    return hex_pattern(value, what)


# --- variables ------------------------------------------------------------------------

def variables_in(text: str) -> list[str]:
    return VARIABLE.findall(text)


def substitute(text: str, values: dict[str, str]) -> str:
    """Text with each {name} replaced by its value; KeyError(name) for one not set."""
    def value(match: re.Match) -> str:
        return values[match.group(1)]
    return VARIABLE.sub(value, text)


def placeholder(text: str) -> str:
    """Text with every {name} as one byte, to check its shape before the values exist."""
    return VARIABLE.sub("00", text)


# --- BER-TLV paths --------------------------------------------------------------------

def tlv_path(text: str, what: str = "tlv") -> tuple[int, ...]:
    """ "6F/A5/88" -> (0x6F, 0xA5, 0x88); a tag is 1 to 4 bytes of hex."""
    tags = []
    for part in str(text).split("/"):
        part = part.strip()
        problem = hex_problem(part) if part else "an empty tag"
        if problem or not 1 <= len(part) // 2 <= 4:
            raise PatternError(f"{what} path {text!r}: {problem or 'a tag is 1 to 4 bytes'}")
        tags.append(int(part, 16))
    return tuple(tags)


def find_tlv(data: bytes, path: tuple[int, ...]) -> bytes | None:
    """The value at path (a lone tag is looked for at any depth); None when absent.
    Raises tlv.TlvError when data is not BER-TLV."""
    objects = tlv.parse(data)
    if len(path) == 1:
        found = tlv.find(objects, path[0])
    else:
        found = None
        level = objects
        for tag in path:
            found = next((o for o in level if o.tag == tag), None)
            if found is None:
                return None
            level = found.value if found.constructed else ()
    if found is None:
        return None
    return tlv.build(found.value) if found.constructed else found.value


# --- expectations ---------------------------------------------------------------------

@dataclass(frozen=True)
class AnswerCheck:
    """What an answer must be: status words (any of), data, TLV objects. Texts may hold {name}."""
    sw: tuple = ("9000",)  # pattern texts or {regex: ...} mappings
    data: object = None
    tlv: tuple = ()  # (path text, pattern value or None for absent or "*" for present)
    default_sw: bool = True  # sw was not written: 9000 is expected


def _pattern(value, values: dict[str, str], what: str) -> Pattern:
    if isinstance(value, str):
        return hex_pattern(substitute(value, values), what)
    return pattern_of(value, what)


def check_answer(answer: ResponseAPDU, check: AnswerCheck, values: dict[str, str]) -> list[str]:
    """What is wrong with answer, one line each; [] when it is as expected."""
    wrong = []
    sw = answer.sw.to_bytes(2, "big")
    if not any(_pattern(p, values, "sw").matches(sw) for p in check.sw):
        wanted = " or ".join(str(p.get("regex") if isinstance(p, dict) else p) for p in check.sw)
        note = " (expected unless the step says sw: ...)" if check.default_sw else ""
        wrong.append(f"sw: expected {wanted}{note}, seen {answer.sw:04X} ({sw_name(answer.sw)})")
    if check.data is not None:
        pattern = _pattern(check.data, values, "data")
        if not pattern.matches(answer.data):
            wrong.append(f"data: expected {pattern}, seen {answer.data.hex().upper() or '(none)'}")
    for path_text, expected in check.tlv:
        path = tlv_path(path_text)
        try:
            value = find_tlv(answer.data, path)
        except tlv.TlvError as e:
            wrong.append(f"tlv {path_text}: the data is not BER-TLV ({e})")
            break
        if expected is None:
            if value is not None:
                wrong.append(f"tlv {path_text}: expected absent, seen {value.hex().upper()}")
        elif value is None:
            wrong.append(f"tlv {path_text}: expected {expected}, the data holds no such object")
        elif expected != "*":
            pattern = _pattern(expected, values, f"tlv {path_text}")
            if not pattern.matches(value):
                wrong.append(f"tlv {path_text}: expected {pattern}, seen {value.hex().upper() or '(empty)'}")
    return wrong


# --- captures -------------------------------------------------------------------------

SLICE = re.compile(r"data\[(-?\d*):(-?\d*)\]")


def check_capture(source, what: str = "capture") -> None:
    """PatternError unless source is data, sw, data[a:b], {tlv: PATH} or {regex: RE}."""
    if isinstance(source, str):
        if source in ("data", "sw") or SLICE.fullmatch(source.replace(" ", "")):
            return
        raise PatternError(f"{what}: {source!r} is not a source: write data, sw, data[0:4], "
                           "{tlv: \"9F7F\"} or {regex: \"...\"}")
    if isinstance(source, dict) and len(source) == 1:
        (kind, value), = source.items()
        if kind == "tlv":
            tlv_path(value, what)
            return
        if kind == "regex" and isinstance(value, str):
            regex_pattern(value, what)
            return
    raise PatternError(f"{what}: write data, sw, data[0:4], {{tlv: \"9F7F\"}} or {{regex: \"...\"}}")


def capture(answer: ResponseAPDU, source) -> str:
    """The hex text source names in answer; PatternError when the answer has no such part."""
    if source == "data":
        return answer.data.hex().upper()
    if source == "sw":
        return f"{answer.sw:04X}"
    if isinstance(source, str):
        start, end = SLICE.fullmatch(source.replace(" ", "")).groups()
        part = answer.data[int(start) if start else None:int(end) if end else None]
        if not part:
            raise PatternError(f"{source}: the data ({len(answer.data)} bytes) has nothing there")
        return part.hex().upper()
    (kind, value), = source.items()
    if kind == "tlv":
        try:
            found = find_tlv(answer.data, tlv_path(value))
        except tlv.TlvError as e:
            raise PatternError(f"tlv {value}: the data is not BER-TLV ({e})") from None
        if found is None:
            raise PatternError(f"tlv {value}: the data holds no such object")
        return found.hex().upper()
    match = re.search(value, answer.data.hex().upper(), re.IGNORECASE)
    if match is None:
        raise PatternError(f"regex {value!r} does not match the data {answer.data.hex().upper()}")
    return (match.group(1) if match.groups() else match.group(0)).upper()
