"""APDU traces: record what crosses a CardSession to a JSON-lines file, and read it back.

`TraceRecorder(session, sink)` is itself a CardSession: it passes every command to the
wrapped session (a real card on a real reader, or any other) and writes the exchange,
with its timing, to the sink before returning the answer. A trace file is one JSON
object per line:

    {"trace": "tapstack-apdu", "version": 1, "session": 1, "reader": "ACS ACR122U 00 00",
     "uid": "04C0FFEE123456", "atr": "3B80800101", "started": "2026-11-27T08:30:00Z",
     "redaction": ["pan"]}
    {"session": 1, "seq": 1, "t_ms": 0.0, "ms": 0.412, "command": "00A40400...", "response": "6A82"}
    {"session": 1, "seq": 2, ..., "response": null, "error": "card_removed"}

A header line starts each session (one tap); exchanges follow, and a line
{"session": 1, "uid": "..."} when the UID was learnt after the header. `response` is null when
the card left before answering (a tear) and `redacted` lists what was masked.

Redaction happens before anything is written. Card numbers are always masked: in the
EMV data objects 5A (PAN), 57 and 9F6B (track 2), 56 (track 1), 5F20 (cardholder name)
and the other tags of protocol.tlv.SENSITIVE_TAGS. A masked PAN keeps its first 6 and
last 4 digits, zeros the rest and adjusts one zeroed digit so the Luhn check still
holds: a replayed trace still reads as a card, whose token is not the real card's.
With `redact_purse`, the purse's card public key and signatures (certificate, receipts,
top-up and lock authorisations) are zeroed too; a replay of such a trace no longer
verifies, by design.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Callable, Iterable

from protocol.purse import (AID, CLA, CURRENCY_CODES, ID_SIZE, INS_DEBIT, INS_GET_RECEIPT, INS_LOCK, INS_TOPUP,
                            MAX_TRANSACTION_AMOUNT, RECEIPT_BODY_SIZE, RECEIPT_SIZE, PurseError, parse_fci)
from protocol import tlv
from protocol.apdu import MalformedAPDU, parse_command
from protocol.emv import luhn_valid
from terminal.readers.base import CardRemoved, CardSession, ReaderError

FORMAT = "tapstack-apdu"
VERSION = 1
# The public key of the wallet emulator's demo issuer (wallet/testcards.py; tests and demos
# only): `terminal trace --demo-issuer` trusts it. The terminal never imports the wallet, so
# it is written here; a test checks the two agree.
DEMO_ISSUER_KEY = bytes.fromhex("26c9e84032561f815db33c7fd06e9725d3641d84eb10ce0519e54b6a34972e4f")

_TRACK2_TAGS = (0x57, 0x9F6B)  # PAN digits, D, YYMM, service code, discretionary data
_PAN_TAG = 0x5A
_TEXT_TAGS = (0x56, 0x5F20, 0x9F0B, 0x9F1F)  # track 1, cardholder name, extended name, track 1 discretionary
_ZERO_TAGS = (0x9F20,)  # track 2 discretionary data


class TraceError(ValueError):
    """A trace file that cannot be read; the message names the file and line."""


# --- redaction -------------------------------------------------------------------------

def mask_pan(digits: str) -> str:
    """The first 6 and last 4 digits kept, zeros between, one of them set so Luhn holds."""
    if len(digits) < 12:
        return "0" * len(digits)
    middle = ["0"] * (len(digits) - 10)
    for d in "0123456789":  # a single digit position reaches every residue mod 10
        middle[-1] = d
        candidate = digits[:6] + "".join(middle) + digits[-4:]
        if luhn_valid(candidate):
            return candidate
    raise AssertionError("unreachable: one digit always fixes a Luhn sum")


def _mask_track2(value: bytes) -> bytes:
    text = value.hex().upper()
    pan, sep, rest = text.partition("D")
    if not sep or not pan.isdigit():
        return bytes(len(value))
    keep = rest[:7]  # YYMM and the service code; discretionary data may hold a dynamic CVV
    masked = mask_pan(pan) + "D" + keep + "".join("F" if c == "F" else "0" for c in rest[7:])
    return bytes.fromhex(masked)


def _mask_pan_field(value: bytes) -> bytes:
    text = value.hex().upper()
    digits = text.rstrip("F")
    if not digits.isdigit():
        return bytes(len(value))
    return bytes.fromhex(mask_pan(digits) + text[len(digits):])


def _masked_value(tag: int, value: bytes) -> bytes:
    if tag == _PAN_TAG:
        return _mask_pan_field(value)
    if tag in _TRACK2_TAGS:
        return _mask_track2(value)
    if tag in _TEXT_TAGS:
        return bytes(b if b in b"^/ " else ord("X") for b in value)
    return bytes(len(value))


def _sensitive_spans(data: bytes, pos: int, end: int) -> list[tuple[int, int, int]]:
    """(tag, value start, value end) of every sensitive primitive object, at any depth.

    Only called on data protocol.tlv.parse accepted, so the structure is known good."""
    spans = []
    while pos < end:
        if data[pos] in (0x00, 0xFF):  # padding between objects
            pos += 1
            continue
        start, first = pos, data[pos]
        pos += 1
        if first & 0x1F == 0x1F:  # multi-byte tag: continuation bytes have bit 8 set
            while data[pos] & 0x80:
                pos += 1
            pos += 1
        tag = int.from_bytes(data[start:pos], "big")
        size = data[pos]
        pos += 1
        if size & 0x80:
            n = size & 0x7F
            size, pos = int.from_bytes(data[pos:pos + n], "big"), pos + n
        if first & 0x20:
            spans += _sensitive_spans(data, pos, pos + size)
        elif tag in tlv.SENSITIVE_TAGS and size:
            spans.append((tag, pos, pos + size))
        pos += size
    return spans


def redact_card_data(data: bytes) -> tuple[bytes, list[str]]:
    """Response data with every sensitive EMV data object masked where it stands (same
    lengths), and the tags masked, as hex. Data that is not BER-TLV is returned as it is."""
    try:
        tlv.parse(data)
    except (tlv.TlvError, ValueError):
        return data, []
    spans = _sensitive_spans(data, 0, len(data))
    out = bytearray(data)
    for tag, start, end in spans:
        out[start:end] = _masked_value(tag, bytes(data[start:end]))
    return bytes(out), sorted({f"{tag:X}" for tag, _, _ in spans})


def _zero(data: bytes, start: int, end: int) -> bytes:
    return data[:start] + bytes(end - start) + data[end:]


def redact_purse(command: bytes, response: bytes | None) -> tuple[bytes, bytes | None, list[str]]:
    """Zero the purse's card public key and signatures in one exchange."""
    marks: list[str] = []
    try:
        cmd = parse_command(command)
    except MalformedAPDU:
        return command, response, marks
    if cmd.cla == CLA and cmd.ins in (INS_TOPUP, INS_LOCK) and len(cmd.data) >= 64:
        offset = command.find(cmd.data)
        command = _zero(command, offset + len(cmd.data) - 64, offset + len(cmd.data))
        marks.append("issuer_signature")
    if response is None or len(response) < 2:
        return command, response, marks
    data = response[:-2]
    if cmd.ins == 0xA4 and cmd.data and AID.startswith(cmd.data):
        try:
            cert = parse_fci(data).certificate
        except PurseError:
            cert = None
        if cert is not None and cert in data:
            at = data.find(cert)
            data = _zero(_zero(data, at + 13, at + 45), at + 49, at + len(cert))  # card key, issuer signature
            marks.append("certificate")
    elif cmd.cla == CLA and cmd.ins in (INS_DEBIT, INS_TOPUP, INS_GET_RECEIPT) and len(data) == RECEIPT_SIZE:
        data = _zero(data, RECEIPT_BODY_SIZE, RECEIPT_SIZE)
        marks.append("receipt_signature")
    return command, data + response[-2:], marks


def redact_exchange(command: bytes, response: bytes | None, purse: bool = False
                    ) -> tuple[bytes, bytes | None, list[str]]:
    """(command, response, what was masked) ready to be written or shown."""
    marks: list[str] = []
    if purse:
        command, response, marks = redact_purse(command, response)
    if response is not None and len(response) > 2:
        data, tags = redact_card_data(response[:-2])
        response = data + response[-2:]
        marks += tags
    return command, response, marks


# --- the trace model and file format ---------------------------------------------------

@dataclass(frozen=True)
class Exchange:
    command: bytes
    response: bytes | None  # None: the card left before answering
    t_ms: float = 0.0  # since the session started
    ms: float = 0.0  # how long the exchange took
    error: str | None = None
    redacted: tuple[str, ...] = ()


@dataclass
class TraceSession:
    """One tap: what the reader knew of the card, and the exchanges in order."""
    reader: str = ""
    uid: bytes | None = None
    atr: bytes = b""
    started: str = ""
    redaction: tuple[str, ...] = ("pan",)
    exchanges: list[Exchange] = field(default_factory=list)


def session_header(number: int, session: TraceSession) -> dict:
    return {"trace": FORMAT, "version": VERSION, "session": number, "reader": session.reader,
            "uid": session.uid.hex().upper() if session.uid else None, "atr": session.atr.hex().upper(),
            "started": session.started, "redaction": list(session.redaction)}


def exchange_line(number: int, seq: int, x: Exchange) -> dict:
    line = {"session": number, "seq": seq, "t_ms": round(x.t_ms, 3), "ms": round(x.ms, 3),
            "command": x.command.hex().upper(), "response": None if x.response is None else x.response.hex().upper()}
    if x.error:
        line["error"] = x.error
    if x.redacted:
        line["redacted"] = list(x.redacted)
    return line


def write_trace(sessions: Iterable[TraceSession], out: IO[str]) -> None:
    for number, session in enumerate(sessions, 1):
        out.write(json.dumps(session_header(number, session)) + "\n")
        for seq, x in enumerate(session.exchanges, 1):
            out.write(json.dumps(exchange_line(number, seq, x)) + "\n")


def hex_problem(text: str) -> str | None:
    """Why text is not hex bytes ("odd number of hex digits (7)"), or None when it is."""
    digits = "".join(text.split())
    bad = next((c for c in digits if c not in "0123456789abcdefABCDEF"), None)
    if bad is not None:
        return f"{bad!r} is not a hex digit"
    if len(digits) % 2:
        return f"odd number of hex digits ({len(digits)}): each byte is two digits"
    return None


def _hex(doc: dict, key: str, where: str, optional: bool = False) -> bytes | None:
    value = doc.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise TraceError(f"{where}: {key!r} must be a hex string")
    problem = hex_problem(value)
    if problem:
        raise TraceError(f"{where}: {key!r} is not hex ({problem}): {value[:40]!r}")
    return bytes.fromhex(value)


def parse_trace(lines: Iterable[str], name: str = "<trace>") -> list[TraceSession]:
    """The sessions of a trace file's lines; TraceError naming name:line on a bad line."""
    sessions: list[TraceSession] = []
    for number, line in enumerate(lines, 1):
        where = f"{name}:{number}"
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
        except json.JSONDecodeError as e:
            raise TraceError(f"{where}: not JSON ({e.msg})") from None
        if not isinstance(doc, dict):
            raise TraceError(f"{where}: each line is a JSON object")
        if "trace" in doc:
            if doc["trace"] != FORMAT or doc.get("version") != VERSION:
                raise TraceError(f"{where}: not a {FORMAT} trace of version {VERSION}")
            sessions.append(TraceSession(str(doc.get("reader", "")), _hex(doc, "uid", where, True),
                                         _hex(doc, "atr", where, True) or b"", str(doc.get("started", "")),
                                         tuple(doc.get("redaction") or ())))
            continue
        if not sessions:
            raise TraceError(f"{where}: an exchange before any session header")
        if "uid" in doc and "command" not in doc:  # the UID, learnt after the header was written
            sessions[-1].uid = _hex(doc, "uid", where, optional=True)
            continue
        if "command" not in doc or "response" not in doc:
            raise TraceError(f"{where}: an exchange needs 'command' and 'response'")
        command = _hex(doc, "command", where)
        if len(command) < 4:
            raise TraceError(f"{where}: a command APDU has at least 4 bytes")
        response = _hex(doc, "response", where, optional=True)
        if response is not None and len(response) < 2:
            raise TraceError(f"{where}: a response APDU has at least 2 bytes (a status word)")
        sessions[-1].exchanges.append(Exchange(command, response, float(doc.get("t_ms", 0)),
                                               float(doc.get("ms", 0)), doc.get("error"),
                                               tuple(doc.get("redacted") or ())))
    if not sessions:
        raise TraceError(f"{name}: no session in this trace")
    return sessions


def read_trace(path: str | Path) -> list[TraceSession]:
    try:
        with open(path, encoding="utf-8") as f:
            return parse_trace(f, str(path))
    except OSError as e:
        raise TraceError(f"{path}: cannot read the trace: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise TraceError(f"{path}: not a text file") from None


# --- recording -------------------------------------------------------------------------

class TraceRecorder:
    """A CardSession that records every exchange of the session it wraps.

    sink: a text file (each line flushed as it is written, so a crash loses nothing
    recorded) or None to keep the trace in memory only (self.trace). `number` is the
    session's number in the file. Exceptions from the wrapped session pass through,
    recorded first.
    """

    def __init__(self, session: CardSession, sink: IO[str] | None = None, *, reader: str = "",
                 number: int = 1, started: datetime | None = None, uid: bytes | None = None,
                 redact_purse: bool = False, clock: Callable[[], float] = time.perf_counter):
        self.session = session
        self.sink = sink
        self.number = number
        self.purse = redact_purse
        self.clock = clock
        self._t0 = clock()
        self._uid_asked = uid is not None
        started = started or datetime.now(timezone.utc)
        self.trace = TraceSession(reader, bytes(uid) if uid else None, bytes(getattr(session, "atr", b"") or b""),
                                  started.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                                  ("pan", "purse") if redact_purse else ("pan",))
        self._write(session_header(number, self.trace))

    @property
    def uid(self) -> bytes | None:
        """The wrapped session's UID, asked for only when the caller asks: on PC/SC asking
        costs an FF CA exchange, which would shift a scripted tear. Recorded on its own line."""
        if not self._uid_asked:
            self._uid_asked = True
            uid = self.session.uid
            if uid:
                self.trace.uid = bytes(uid)
                self._write({"session": self.number, "uid": self.trace.uid.hex().upper()})
        return self.trace.uid

    @property
    def atr(self) -> bytes:
        return self.trace.atr

    @property
    def exchanges(self) -> list[Exchange]:
        return self.trace.exchanges

    def _write(self, doc: dict) -> None:
        if self.sink is not None:
            self.sink.write(json.dumps(doc) + "\n")
            self.sink.flush()

    def _record(self, command: bytes, response: bytes | None, start: float, error: str | None) -> None:
        command, response, marks = redact_exchange(bytes(command), response, purse=self.purse)
        x = Exchange(command, response, (start - self._t0) * 1000, (self.clock() - start) * 1000, error, tuple(marks))
        self.trace.exchanges.append(x)
        self._write(exchange_line(self.number, len(self.trace.exchanges), x))

    def transmit(self, apdu: bytes) -> bytes:
        start = self.clock()
        try:
            response = bytes(self.session.transmit(apdu))
        except CardRemoved:
            self._record(apdu, None, start, "card_removed")
            raise
        except ReaderError as e:
            self._record(apdu, None, start, f"reader_error: {e}")
            raise
        self._record(apdu, response, start, None)
        return response

    def close(self) -> None:
        self.session.close()


def format_exchange(x: Exchange) -> str:
    """One line for a person: '>> 00A4... << 6A82', card numbers already masked at recording."""
    answer = "(no answer: " + (x.error or "torn") + ")" if x.response is None else x.response.hex().upper()
    return f">> {x.command.hex().upper()}\n   << {answer}"


def refusal_message(outcome, trusted_any: bool) -> str:
    """Why the recorded tap did not pass, and what to do when an option would have helped."""
    text = f"the card was refused: {outcome.reason}" if outcome.kind != "error" else \
        f"the tap failed: {outcome.reason}"
    if outcome.detail:
        text += f" ({outcome.detail})"
    if outcome.reason == "bad_certificate" and "unknown issuer" in outcome.detail:
        text += ("; its issuer is not trusted: pass its public key with --issuer-key HEX"
                 + ("" if trusted_any else ", or --demo-issuer for the wallet emulator's test cards"))
    return text + ". The trace holds the exchanges all the same"


# --- `tapstack terminal trace` ---------------------------------------------------------

def _trace_command():
    import click

    from terminal.readers import SPEC_HELP

    def hex_option(value: str, name: str, sizes: tuple[int, ...] | None = None) -> bytes:
        text = value
        if value.startswith("@"):
            try:
                text = Path(value[1:]).read_text().strip()
            except OSError as e:
                raise click.UsageError(f"{name}: cannot read {value[1:]}: {e.strerror or e}") from None
        problem = hex_problem(text)
        if problem:
            raise click.UsageError(f"{name} is hex (or @FILE holding hex): {problem}")
        raw = bytes.fromhex("".join(text.split()))
        if sizes and len(raw) not in sizes:
            raise click.UsageError(f"{name} is {' or '.join(map(str, sizes))} bytes")
        return raw

    @click.command("trace")
    @click.option("--reader", "reader_spec", required=True, help=SPEC_HELP)
    @click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
                  help="The trace file (JSON lines) to write.")
    @click.option("--append", is_flag=True, help="Add this tap as the next session of an existing trace.")
    @click.option("--timeout", type=click.FloatRange(0.1, 3600), default=30, show_default=True,
                  help="Seconds to wait for a card.")
    @click.option("--fare", type=click.IntRange(1, MAX_TRANSACTION_AMOUNT), default=200, show_default=True,
                  help="Fare in minor units: a purse card pays it.")
    @click.option("--currency", type=click.Choice(sorted(CURRENCY_CODES)), default="CNY", show_default=True)
    @click.option("--terminal-id", default="TRACE001", show_default=True, help="8 ASCII characters.")
    @click.option("--token-key", required=True,
                  help="Token key hex (>= 16 bytes), or @FILE holding it: the one the validators use.")
    @click.option("--issuer-key", "issuer_keys", multiple=True,
                  help="Issuer public key hex (or @FILE), repeatable; none: a purse card is refused "
                       "(unknown issuer) before it is debited.")
    @click.option("--demo-issuer", is_flag=True,
                  help="Also trust the demo issuer of the wallet emulator's test cards (tests only).")
    @click.option("--nonce", default=None, help="The tap's 8-byte transaction id in hex (default random): "
                                                "fixed, a purse tap replays byte for byte.")
    @click.option("--redact-purse", is_flag=True, help="Also zero the purse's card key and signatures.")
    def trace_command(reader_spec, out_path, append, timeout, fare, currency, terminal_id, token_key,
                      issuer_keys, demo_issuer, nonce, redact_purse):
        """Record one tap at READER to a trace file; card numbers are masked before writing.

        The tap is a validator's tap: a purse card is debited the fare. Replay the trace
        as a card in scenarios (type: replay) or with tapstack.testing.replay.ReplayCard.
        Exits 1 when the card was refused or the tap failed (the trace is written all the same).
        """
        from protocol import certs
        from terminal.readers import open_reader
        from terminal.tap import tap

        if not (terminal_id.isascii() and len(terminal_id) == ID_SIZE):
            raise click.UsageError(f"--terminal-id is {ID_SIZE} ASCII characters")
        key = hex_option(token_key, "--token-key")
        if len(key) < 16:
            raise click.UsageError("--token-key is at least 16 bytes")
        issuers = {}
        for value in issuer_keys:
            public = hex_option(value, "--issuer-key", (32,))
            issuers[certs.key_id(public)] = public
        if demo_issuer:
            issuers[certs.key_id(DEMO_ISSUER_KEY)] = DEMO_ISSUER_KEY
        number = 1
        if append and out_path.exists():
            try:
                number = len(read_trace(out_path)) + 1
            except TraceError as e:
                raise click.ClickException(str(e)) from None
        now = datetime.now(timezone.utc)
        from terminal.tap import TapContext

        ctx = TapContext(fare=fare, currency=currency, terminal_id=terminal_id.encode("ascii"), issuer_keys=issuers,
                         token_key=key, now=now, nonce=hex_option(nonce, "--nonce", (8,)) if nonce else None)
        try:
            reader = open_reader(reader_spec)
        except ReaderError as e:
            raise click.ClickException(str(e)) from None
        try:
            click.echo(f"waiting {timeout:g} s for a card on {reader.name} ...", err=True)
            try:
                session = reader.wait_for_card(timeout)
            except ReaderError as e:
                raise click.ClickException(str(e)) from None
            if session is None:
                raise click.ClickException(f"no card on {reader.name} within {timeout:g} s")
            try:
                out = open(out_path, "a" if append else "w", encoding="utf-8")
            except OSError as e:
                raise click.ClickException(f"cannot write {out_path}: {e.strerror or e}") from None
            with out:
                recorder = TraceRecorder(session, out, reader=reader.name, number=number, started=now,
                                         redact_purse=redact_purse)
                outcome, _ = tap(recorder, ctx)
                try:  # the UID, so a replay answers FF CA as this card did (on PC/SC one more exchange)
                    recorder.uid
                except (CardRemoved, ReaderError):
                    pass
            click.echo(f"{outcome.kind} {outcome.signal} {outcome.reason}: {len(recorder.exchanges)} exchanges "
                       f"written to {out_path} (session {number})")
        finally:
            reader.close()
        if not outcome.accepted:
            raise click.ClickException(refusal_message(outcome, bool(issuers)))

    return trace_command


trace_command = _trace_command()
