"""ISO/IEC 7816-4 command and response APDUs, and status words.

Pure: bytes in, values out. A command APDU is one of four cases:

    case 1: CLA INS P1 P2
    case 2: CLA INS P1 P2 Le              (short Le: 1 byte, 00 means 256)
    case 3: CLA INS P1 P2 Lc data
    case 4: CLA INS P1 P2 Lc data Le

Extended lengths put 00 before a 2-byte Lc (or, in case 2, before a 2-byte Le);
in case 4E the Le is 2 bytes with no further 00. Le 0000 means 65536.
"""
from __future__ import annotations

from dataclasses import dataclass


class MalformedAPDU(ValueError):
    """The bytes do not form a command APDU; answer SW_WRONG_LENGTH."""


# Status words (ISO 7816-4 section 5.1.3), the ones tapstack's cards answer.
SW_OK = 0x9000
SW_BYTES_REMAINING = 0x6100  # 61xx: xx more bytes, fetch with GET RESPONSE
SW_WARNING_STATE_UNCHANGED = 0x6200
SW_MEMORY_FAILURE = 0x6581
SW_WRONG_LENGTH = 0x6700
SW_SECURITY_STATUS = 0x6982
SW_AUTH_FAILED = 0x6983  # authentication method blocked: wallet locked
SW_DATA_INVALID = 0x6984
SW_CONDITIONS_NOT_SATISFIED = 0x6985
SW_WRONG_DATA = 0x6A80
SW_FUNCTION_NOT_SUPPORTED = 0x6A81
SW_FILE_NOT_FOUND = 0x6A82
SW_RECORD_NOT_FOUND = 0x6A83
SW_NOT_ENOUGH_MEMORY = 0x6A84
SW_WRONG_P1P2 = 0x6A86
SW_REFERENCED_DATA_NOT_FOUND = 0x6A88
SW_WRONG_LE = 0x6C00  # 6Cxx: wrong Le, xx is the right one
SW_INS_NOT_SUPPORTED = 0x6D00
SW_CLA_NOT_SUPPORTED = 0x6E00
SW_UNKNOWN = 0x6F00

SW_NAMES = {
    SW_OK: "success",
    SW_WARNING_STATE_UNCHANGED: "warning, state unchanged",
    SW_MEMORY_FAILURE: "memory failure",
    SW_WRONG_LENGTH: "wrong length",
    SW_SECURITY_STATUS: "security status not satisfied",
    SW_AUTH_FAILED: "authentication method blocked",
    SW_DATA_INVALID: "referenced data invalidated",
    SW_CONDITIONS_NOT_SATISFIED: "conditions of use not satisfied",
    SW_WRONG_DATA: "incorrect parameters in the data field",
    SW_FUNCTION_NOT_SUPPORTED: "function not supported",
    SW_FILE_NOT_FOUND: "file or application not found",
    SW_RECORD_NOT_FOUND: "record not found",
    SW_NOT_ENOUGH_MEMORY: "not enough memory space",
    SW_WRONG_P1P2: "incorrect parameters P1-P2",
    SW_REFERENCED_DATA_NOT_FOUND: "referenced data not found",
    SW_INS_NOT_SUPPORTED: "instruction not supported",
    SW_CLA_NOT_SUPPORTED: "class not supported",
    SW_UNKNOWN: "no precise diagnosis",
}


def sw_name(sw: int) -> str:
    """A human name for a status word, e.g. sw_name(0x6A82) -> 'file or application not found'."""
    if sw in SW_NAMES:
        return SW_NAMES[sw]
    if sw & 0xFF00 == SW_BYTES_REMAINING:
        return f"{sw & 0xFF} response bytes still available"
    if sw & 0xFF00 == SW_WRONG_LE:
        return f"wrong Le, use {sw & 0xFF}"
    if sw & 0xFFF0 == 0x63C0:
        return f"verification failed, {sw & 0xF} tries left"
    return "unknown status"


@dataclass(frozen=True)
class CommandAPDU:
    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes = b""
    le: int | None = None  # None: no Le field; 0 < le <= 65536 otherwise

    def __post_init__(self):
        for name in ("cla", "ins", "p1", "p2"):
            if not 0 <= getattr(self, name) <= 0xFF:
                raise ValueError(f"{name} must be one byte")
        if len(self.data) > 65535:
            raise ValueError("data longer than 65535 bytes")
        if self.le is not None and not 1 <= self.le <= 65536:
            raise ValueError("le must be 1..65536")

    @property
    def extended(self) -> bool:
        return len(self.data) > 255 or (self.le is not None and self.le > 256)

    def to_bytes(self) -> bytes:
        header = bytes((self.cla, self.ins, self.p1, self.p2))
        ext = self.extended
        body = b""
        if self.data:
            n = len(self.data)
            body += (b"\x00" + n.to_bytes(2, "big") if ext else bytes((n,))) + self.data
        if self.le is not None:
            if ext:
                le = (self.le % 65536).to_bytes(2, "big")
                body += le if self.data else b"\x00" + le
            else:
                body += bytes((self.le % 256,))
        return header + body

    def __bytes__(self) -> bytes:
        return self.to_bytes()


def parse_command(raw: bytes) -> CommandAPDU:
    """Parse a command APDU of any case, short or extended; raise MalformedAPDU if it is none."""
    raw = bytes(raw)
    if len(raw) < 4:
        raise MalformedAPDU(f"a command APDU has at least 4 bytes, got {len(raw)}")
    cla, ins, p1, p2 = raw[:4]
    body = raw[4:]
    if not body:  # case 1
        return CommandAPDU(cla, ins, p1, p2)
    if len(body) == 1:  # case 2S
        return CommandAPDU(cla, ins, p1, p2, le=body[0] or 256)
    if body[0] != 0:  # short case 3 or 4
        lc = body[0]
        if len(body) == 1 + lc:
            return CommandAPDU(cla, ins, p1, p2, body[1:])
        if len(body) == 2 + lc:
            return CommandAPDU(cla, ins, p1, p2, body[1 : 1 + lc], le=body[-1] or 256)
        raise MalformedAPDU(f"Lc says {lc} data bytes but {len(body) - 1} follow")
    # body[0] == 0 and len(body) >= 2: extended
    if len(body) == 3:  # case 2E
        return CommandAPDU(cla, ins, p1, p2, le=int.from_bytes(body[1:3], "big") or 65536)
    if len(body) < 3:
        raise MalformedAPDU("truncated extended length field")
    lc = int.from_bytes(body[1:3], "big")
    if lc == 0:
        raise MalformedAPDU("extended Lc of zero")
    if len(body) == 3 + lc:
        return CommandAPDU(cla, ins, p1, p2, body[3:])
    if len(body) == 5 + lc:
        return CommandAPDU(cla, ins, p1, p2, body[3 : 3 + lc], le=int.from_bytes(body[-2:], "big") or 65536)
    raise MalformedAPDU(f"extended Lc says {lc} data bytes but {len(body) - 3} follow")


@dataclass(frozen=True)
class ResponseAPDU:
    data: bytes
    sw: int

    @property
    def ok(self) -> bool:
        return self.sw == SW_OK

    @property
    def sw1(self) -> int:
        return self.sw >> 8

    @property
    def sw2(self) -> int:
        return self.sw & 0xFF

    def to_bytes(self) -> bytes:
        return bytes(self.data) + self.sw.to_bytes(2, "big")

    def __bytes__(self) -> bytes:
        return self.to_bytes()

    def describe(self) -> str:
        return f"{self.sw:04X} ({sw_name(self.sw)})"


def parse_response(raw: bytes) -> ResponseAPDU:
    """Split a response APDU into data and status word; raise MalformedAPDU if under 2 bytes."""
    raw = bytes(raw)
    if len(raw) < 2:
        raise MalformedAPDU(f"a response APDU has at least 2 bytes, got {len(raw)}")
    return ResponseAPDU(raw[:-2], int.from_bytes(raw[-2:], "big"))


def respond(sw: int, data: bytes = b"") -> bytes:
    """Response bytes: data followed by the status word."""
    return bytes(data) + sw.to_bytes(2, "big")


def select_by_name(aid: bytes, first: bool = True) -> CommandAPDU:
    """SELECT by DF name (AID), P2 00 first or only occurrence, returning FCI; Le 00."""
    return CommandAPDU(0x00, 0xA4, 0x04, 0x00 if first else 0x02, bytes(aid), le=256)
