"""BER-TLV as EMV uses it (ISO/IEC 8825-1, EMV Book 3 Annex B), and data object lists.

Pure. A data object is a `Tlv(tag, value)`: `tag` is the tag's bytes read as a
big-endian integer (0x9F38), `value` is bytes for a primitive object and a tuple of
child `Tlv` for a constructed one (bit 6 of the first tag byte set). `parse` turns
bytes into a tuple of objects, `build` turns them back into bytes, `find` looks for a
tag through the nesting. `parse_dol` reads a DOL (PDOL, CDOL): tags and lengths, no values.

Lengths: one byte below 0x80, or 0x81/0x82/0x83 followed by 1 to 3 length bytes;
`build` always writes the shortest form. The indefinite form (0x80) and longer forms
are errors. Bytes 00 and FF before, between and after objects are padding and are
skipped (EMV Book 3 Annex B1). Errors are `TlvError`, whose message says what is wrong
and at which offset, and never carries value bytes: records hold card numbers.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable, Iterator

MAX_TAG_BYTES = 4
MAX_LENGTH = 0xFFFFFF  # 83 xx xx xx, the longest length form accepted
_PADDING = (0x00, 0xFF)

# Objects holding a card number or the cardholder's name: their repr hides the value.
SENSITIVE_TAGS = frozenset({0x5A, 0x56, 0x57, 0x5F20, 0x9F0B, 0x9F1F, 0x9F20, 0x9F6B})


class TlvError(ValueError):
    """The bytes are not well-formed BER-TLV (or not a well-formed DOL)."""


def tag_bytes(tag: int) -> bytes:
    """The encoding of a tag number; ValueError if it is not a valid BER tag."""
    if not isinstance(tag, int) or tag <= 0:
        raise ValueError(f"tag must be a positive int, got {tag!r}")
    raw = tag.to_bytes((tag.bit_length() + 7) // 8, "big")
    if len(raw) > MAX_TAG_BYTES:
        raise ValueError(f"tag {tag:X} is longer than {MAX_TAG_BYTES} bytes")
    if raw[0] in _PADDING:
        raise ValueError(f"tag {tag:X} starts with a padding byte")
    multi = raw[0] & 0x1F == 0x1F
    if not multi and len(raw) > 1:
        raise ValueError(f"tag {tag:X}: first byte does not announce further tag bytes")
    if multi:
        if len(raw) == 1:
            raise ValueError(f"tag {tag:X}: first byte announces a further tag byte")
        if any(b & 0x80 == 0 for b in raw[1:-1]) or raw[-1] & 0x80:
            raise ValueError(f"tag {tag:X}: bad continuation bits")
    return raw


@lru_cache(maxsize=1024)
def is_constructed(tag: int) -> bool:
    """True for a constructed tag (bit 6 of its first byte set)."""
    first = tag >> (8 * ((tag.bit_length() - 1) // 8))
    return bool(first & 0x20)


@dataclass(frozen=True)
class Tlv:
    tag: int
    value: bytes | tuple["Tlv", ...]

    def __post_init__(self):
        tag_bytes(self.tag)
        if self.constructed:
            if not isinstance(self.value, tuple) or not all(isinstance(c, Tlv) for c in self.value):
                raise ValueError(f"constructed tag {self.tag:X} needs a tuple of Tlv")
        elif not isinstance(self.value, bytes):
            raise ValueError(f"primitive tag {self.tag:X} needs a bytes value")

    @property
    def constructed(self) -> bool:
        return is_constructed(self.tag)

    def to_bytes(self) -> bytes:
        body = build(self.value) if self.constructed else self.value
        return tag_bytes(self.tag) + encode_length(len(body)) + body

    def __repr__(self) -> str:
        if self.tag in SENSITIVE_TAGS and not self.constructed:
            return f"Tlv(tag=0x{self.tag:X}, value=<{len(self.value)} bytes hidden>)"
        return f"Tlv(tag=0x{self.tag:X}, value={self.value!r})"


def _trusted(tag: int, value: bytes | tuple[Tlv, ...]) -> Tlv:
    """A Tlv the parser has already checked, built without checking it again."""
    obj = object.__new__(Tlv)
    object.__setattr__(obj, "tag", tag)
    object.__setattr__(obj, "value", value)
    return obj


def encode_length(n: int) -> bytes:
    """The shortest BER length field for n."""
    if n < 0 or n > MAX_LENGTH:
        raise ValueError(f"length {n} out of range")
    if n < 0x80:
        return bytes((n,))
    size = (n.bit_length() + 7) // 8
    return bytes((0x80 | size,)) + n.to_bytes(size, "big")


def build(objects: Iterable[Tlv]) -> bytes:
    """Encode data objects one after the other."""
    return b"".join(obj.to_bytes() for obj in objects)


def tlv(tag: int, value: bytes | Iterable[Tlv]) -> Tlv:
    """A Tlv from a tag and bytes (primitive) or an iterable of Tlv (constructed)."""
    return Tlv(tag, bytes(value) if not is_constructed(tag) else tuple(value))


def _read_tag(data: bytes, pos: int, end: int) -> tuple[int, int]:
    start = pos
    first = data[pos]
    pos += 1
    if first & 0x1F == 0x1F:
        while True:
            if pos >= end:
                raise TlvError(f"tag at offset {start} is truncated")
            if pos - start >= MAX_TAG_BYTES:
                raise TlvError(f"tag at offset {start} is longer than {MAX_TAG_BYTES} bytes")
            b = data[pos]
            pos += 1
            if not b & 0x80:
                break
    return int.from_bytes(data[start:pos], "big"), pos


def _read_length(data: bytes, pos: int, end: int, tag: int) -> tuple[int, int]:
    if pos >= end:
        raise TlvError(f"tag {tag:X}: length missing at offset {pos}")
    first = data[pos]
    if first < 0x80:
        return first, pos + 1
    if first == 0x80:
        raise TlvError(f"tag {tag:X}: indefinite length (80) at offset {pos} is not allowed")
    size = first & 0x7F
    if size > 3:
        raise TlvError(f"tag {tag:X}: length form {first:02X} at offset {pos} is not 81, 82 or 83")
    if pos + 1 + size > end:
        raise TlvError(f"tag {tag:X}: length field at offset {pos} is truncated")
    return int.from_bytes(data[pos + 1 : pos + 1 + size], "big"), pos + 1 + size


def _parse(data: bytes, pos: int, end: int, depth: int) -> tuple[Tlv, ...]:
    if depth > 16:
        raise TlvError(f"nesting deeper than 16 levels at offset {pos}")
    objects = []
    while pos < end:
        if data[pos] in _PADDING:
            pos += 1
            continue
        start = pos
        tag, pos = _read_tag(data, pos, end)
        length, pos = _read_length(data, pos, end, tag)
        if pos + length > end:
            raise TlvError(f"tag {tag:X} at offset {start}: length {length} runs "
                           f"{pos + length - end} bytes past the end")
        if data[start] & 0x20:
            value = _parse(data, pos, pos + length, depth + 1)
        else:
            value = data[pos : pos + length]
        objects.append(_trusted(tag, value))
        pos += length
    return tuple(objects)


def parse(data: bytes) -> tuple[Tlv, ...]:
    """All data objects in data (padding skipped); TlvError if the bytes are not BER-TLV."""
    data = bytes(data)
    return _parse(data, 0, len(data), 0)


def parse_one(data: bytes, tag: int | None = None) -> Tlv:
    """Exactly one data object (with the given tag, if one is given); TlvError otherwise."""
    objects = parse(data)
    if len(objects) != 1:
        raise TlvError(f"expected one data object, found {len(objects)}")
    if tag is not None and objects[0].tag != tag:
        raise TlvError(f"expected tag {tag:X}, found {objects[0].tag:X}")
    return objects[0]


def walk(objects: Iterable[Tlv]) -> Iterator[Tlv]:
    """Every object, depth first, parents before their children."""
    for obj in objects:
        yield obj
        if obj.constructed:
            yield from walk(obj.value)


def find(objects: Iterable[Tlv] | Tlv, tag: int) -> Tlv | None:
    """The first object with this tag at any depth, or None."""
    if isinstance(objects, Tlv):
        objects = (objects,)
    return next((obj for obj in walk(objects) if obj.tag == tag), None)


def find_value(objects: Iterable[Tlv] | Tlv, tag: int) -> bytes | None:
    """The value of the first primitive object with this tag at any depth, or None."""
    if isinstance(objects, Tlv):
        objects = (objects,)
    return next((obj.value for obj in walk(objects) if obj.tag == tag and not obj.constructed), None)


@dataclass(frozen=True)
class DolEntry:
    tag: int
    length: int

    def __repr__(self) -> str:
        return f"DolEntry(tag=0x{self.tag:X}, length={self.length})"


def parse_dol(data: bytes) -> tuple[DolEntry, ...]:
    """A data object list: tags each followed by a length, no values (EMV Book 3 5.4)."""
    data = bytes(data)
    entries = []
    pos, end = 0, len(data)
    while pos < end:
        if data[pos] in _PADDING:
            raise TlvError(f"DOL: byte {data[pos]:02X} at offset {pos} cannot start a tag")
        tag, pos = _read_tag(data, pos, end)
        length, pos = _read_length(data, pos, end, tag)
        entries.append(DolEntry(tag, length))
    return tuple(entries)


def build_dol(entries: Iterable[DolEntry]) -> bytes:
    return b"".join(tag_bytes(e.tag) + encode_length(e.length) for e in entries)


def dol_length(entries: Iterable[DolEntry]) -> int:
    """The number of bytes of data a DOL asks for."""
    return sum(e.length for e in entries)
