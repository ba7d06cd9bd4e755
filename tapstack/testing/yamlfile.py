"""The kit's YAML files (scenarios, card files): read with line numbers, checked with errors
a newcomer can act on.

`load_yaml(text, path)` gives plain dicts and lists that remember their lines (Map, Seq).
A YAML syntax error is said in the kit's words at the line to look at (the `{` that is
never closed, not the end of the file). `Check` collects every error of a file, each
"FILE:LINE: what is wrong", so one run shows them all; `FileErrors` carries them.
"""
from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from tapstack.testing.expect import hex_problem


class ScenarioError(ValueError):
    """A file that cannot be used; str() is "FILE:LINE: what is wrong"."""

    def __init__(self, path: str | Path, line: int | None, message: str):
        self.path, self.line, self.message = str(path), line, message
        super().__init__(f"{self.path}:{line}: {message}" if line else f"{self.path}: {message}")


class FileErrors(ScenarioError):
    """Every error found in one file; str() is one "FILE:LINE: ..." line per error."""

    def __init__(self, errors: list[ScenarioError]):
        first = errors[0]
        super().__init__(first.path, first.line, first.message)
        self.errors = errors

    def __str__(self) -> str:
        return "\n".join(ScenarioError.__str__(e) for e in self.errors)


# --- YAML with line numbers ------------------------------------------------------------

class Map(dict):
    """A YAML mapping that remembers the line of each key (1-based)."""
    line: int = 0
    key_lines: dict

    def at(self, key: str) -> int:
        return self.key_lines.get(key, self.line)


class Seq(list):
    """A YAML sequence that remembers the line of each item."""
    line: int = 0
    item_lines: list


def new_map(values: dict, line: int) -> Map:
    out = Map(values)
    out.line, out.key_lines = line, {k: line for k in values}
    return out


class _Loader(yaml.SafeLoader):
    path = "<file>"


def _construct_map(loader: _Loader, node: yaml.MappingNode) -> Map:
    loader.flatten_mapping(node)
    out = Map()
    out.line, out.key_lines = node.start_mark.line + 1, {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if not isinstance(key, str) and isinstance(key_node, yaml.ScalarNode) and key is not None:
            key = key_node.value  # 9000: or 0020000004: as written, not as a number
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


class Number(int):
    """A whole number that remembers how it was written: sw: 9000 is the status word 9000."""
    text: str


def _construct_int(loader: _Loader, node: yaml.ScalarNode) -> Number:
    out = Number(yaml.SafeLoader.construct_yaml_int(loader, node))
    out.text = node.value
    return out


_Loader.add_constructor("tag:yaml.org,2002:map", _construct_map)
_Loader.add_constructor("tag:yaml.org,2002:seq", _construct_seq)
_Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)


# PyYAML's problems, in the kit's words. (problem regex, context regex or None, use the
# context's line, message); {context_line} is the line where the construct began.
_SYNTAX = [
    (r"expected ',' or '\}'", None, True,
     "the '{' on this line is never closed: a '}' is missing (or a ',' between two entries)"),
    (r"expected ',' or '\]'", None, True,
     "the '[' on this line is never closed: a ']' is missing (or a ',' between two items)"),
    (r"found unexpected end of stream", r"quoted scalar", True, "the quote opened on this line is never closed"),
    (r"found character '\\t'", None, False, "a tab character: YAML indents with spaces only"),
    (r"found undefined alias|expected alphabetic or numeric character", None, False,
     "a value starting with '*' must be in quotes (\"*\"): YAML reads *name as a reference"),
    (r"found character '(.)' that cannot start any token", None, False,
     "a value starting with {0!r} must be in quotes"),
    (r"mapping values are not allowed here", None, False,
     "a ':' where YAML expects none: put a value holding ': ' in quotes, or indent this line "
     "as its neighbours"),
    (r"could not find expected ':'", None, False, "a line in a mapping must be 'key: value'"),
    (r"expected <block end>, but found '\]'", None, False, "a ']' that closes nothing"),
    (r"expected <block end>, but found '\}'", None, False, "a '}' that closes nothing"),
    (r"expected <block end>|did not find expected (key|'-' indicator)|expected a mapping", None, False,
     "this line's indentation does not fit the lines above it: the keys of one mapping (and the "
     "'-' of one list) start in the same column"),
]


def _syntax_message(error: yaml.MarkedYAMLError) -> tuple[int | None, str]:
    problem, context = error.problem or "", error.context or ""
    for pattern, context_pattern, at_context, words in _SYNTAX:
        found = re.search(pattern, problem)
        if found and (context_pattern is None or re.search(context_pattern, context)):
            mark = error.context_mark if at_context and error.context_mark else error.problem_mark
            if found.groups():
                words = words.replace("{0!r}", repr(found.group(1)))
            return (mark.line + 1 if mark else None), "not valid YAML: " + words
    mark = error.problem_mark or error.context_mark
    return (mark.line + 1 if mark else None), f"not valid YAML: {problem or context}"


def load_yaml(text: str, path: str | Path = "<file>") -> Any:
    loader = _Loader(text)
    loader.path = str(path)
    try:
        return loader.get_single_data()
    except yaml.MarkedYAMLError as e:
        line, message = _syntax_message(e)
        raise ScenarioError(path, line, message) from None
    except yaml.YAMLError as e:
        raise ScenarioError(path, None, f"not valid YAML: {e}") from None
    finally:
        loader.dispose()


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as e:
        raise ScenarioError(path, None, f"cannot read: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise ScenarioError(path, None, "not a UTF-8 text file") from None


# --- checking values -------------------------------------------------------------------

def kind_of(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, Map):
        return "a mapping"
    if isinstance(value, Seq):
        return "a list"
    return f"{type(value).__name__} {value!r}"


def did_you_mean(word: Any, choices) -> str:
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}? " if close else ""


def colon_hint(text: Any, keys) -> str:
    """For 'type:purse': YAML needs a space after the colon of 'key: value'."""
    if isinstance(text, str):
        key, colon, value = text.partition(":")
        if colon and value and not value.startswith(" ") and key.strip() in keys:
            return (f"{text!r} needs a space after the colon: write '{key.strip()}: {value.strip()}' "
                    "(without it YAML reads one word)")
    return ""


class _Abandoned(Exception):
    pass


class Check:
    """One file being checked: `fail` raises at the first error of a part, `each` keeps going
    to the next part, so every part's first error is reported (`done` raises them all)."""

    def __init__(self, path: Path):
        self.path = path
        self.errors: list[ScenarioError] = []

    def fail(self, line: int | None, message: str):
        raise ScenarioError(self.path, line, message)

    def part(self, run: Callable[[], Any], default: Any = None) -> Any:
        """run(); on a ScenarioError keep it and return default."""
        try:
            return run()
        except FileErrors as e:
            self.errors.extend(e.errors)
        except ScenarioError as e:
            self.errors.append(e)
        except _Abandoned:
            pass
        return default

    def abandon(self):
        """Give up the part being checked: its errors are kept already."""
        raise _Abandoned()

    def done(self) -> None:
        if self.errors:
            self.errors.sort(key=lambda e: (e.path != str(self.path), e.line or 0))
            raise FileErrors(self.errors)

    def keys(self, mapping: Map, allowed, what: str, required: tuple[str, ...] = ()) -> None:
        """Every unknown key of mapping (each with its hint), then the required ones missing."""
        problems = []
        for key in mapping:
            if key not in allowed:
                hint = colon_hint(key, allowed) or (did_you_mean(key, allowed)
                                                    + f"valid keys are {', '.join(allowed)}")
                problems.append(ScenarioError(self.path, mapping.key_lines[key],
                                              f"unknown key {key!r} in {what}: {hint}"))
        for key in required:
            if key not in mapping and not any(colon_hint(k, (key,)) for k in mapping):
                problems.append(ScenarioError(self.path, mapping.line, f"{what} needs {key!r}"))
        if problems:
            raise FileErrors(problems)

    def mapping(self, value: Any, line: int, what: str, keys=()) -> Map:
        if not isinstance(value, Map):
            self.fail(line, colon_hint(value, keys) or f"{what} must be a mapping (key: value), not {kind_of(value)}")
        return value

    def integer(self, value: Any, line: int, what: str, low: int = 0, high: int | None = None) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            money = " (minor units)" if any(w in what for w in ("fare", "balance", "amount")) else ""
            self.fail(line, f"{what} must be a whole number{money}, not {kind_of(value)}")
        if value < low or (high is not None and value > high):
            self.fail(line, f"{what} must be {low}..{high}" if high is not None else f"{what} must be at least {low}")
        return value

    def number(self, value: Any, line: int, what: str, high: float = 60.0) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= high:
            self.fail(line, f"{what} must be a number of seconds 0..{high:g}, not {value!r}")
        return float(value)

    def text(self, value: Any, line: int, what: str) -> str:
        if not isinstance(value, str) or not value:
            self.fail(line, f"{what} must be text, not {kind_of(value)}")
        return value

    def boolean(self, value: Any, line: int, what: str) -> bool:
        if not isinstance(value, bool):
            self.fail(line, f"{what} must be true or false, not {value!r}")
        return value

    def hex_bytes(self, value: Any, line: int, what: str, sizes: tuple[int, ...] | None = None) -> bytes:
        if not isinstance(value, str):
            self.fail(line, f"{what} must be hex text in quotes (e.g. \"04C0FFEE123456\"), not {kind_of(value)}")
        problem = hex_problem(value)
        if problem:
            self.fail(line, f"{what} {value!r}: {problem}")
        raw = bytes.fromhex("".join(value.split()))
        if sizes and len(raw) not in sizes:
            self.fail(line, f"{what} must be {' or '.join(map(str, sizes))} bytes, got {len(raw)}")
        return raw

    def choice(self, value: Any, line: int, what: str, choices) -> str:
        if value not in choices:
            self.fail(line, f"{what} {value!r} is not known: {did_you_mean(value, choices)}"
                            f"use one of {', '.join(map(str, choices))}")
        return value
