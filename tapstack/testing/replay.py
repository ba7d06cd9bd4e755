"""A recorded APDU trace (terminal/trace.py) played back as a virtual card.

    card = ReplayCard.from_file("tap.trace.jsonl")
    # present it on any Field: each command is answered with the recorded response

Matching, for each command the terminal sends:
  1. the next recorded exchange, if its command is byte for byte the same;
  2. with match="shape" (the default), the next recorded exchange if its command has
     the same CLA INS P1 P2 and length: fresh random fields (an EMV unpredictable
     number, a purse nonce) differ from tap to tap;
  3. any other recorded exchange with the very same command (a terminal re-reading);
  4. nothing: a SELECT is answered 6A82, anything else 6D00, and the mismatch is kept
     in `mismatches` (with strict=True the runner fails the step on it).

Each trace session is one tap. A power-on after exchanges were answered moves to the
next recorded session; after the last, replay starts again from the first. Exchanges
recorded without an answer (a tear) are skipped: tear a replay with the Field's script.
The UID is the recorded one, or answered by FF CA when no such exchange was recorded.
"""
from __future__ import annotations

from pathlib import Path

from protocol.apdu import SW_FILE_NOT_FOUND, SW_INS_NOT_SUPPORTED, SW_OK, respond
from terminal.trace import Exchange, TraceSession, read_trace
from wallet.card import DEFAULT_ATR

GET_UID = bytes.fromhex("FFCA000000")


class ReplayCard:
    def __init__(self, sessions: list[TraceSession], match: str = "shape", uid: bytes | None = None,
                 name: str = "replayed card"):
        if match not in ("exact", "shape"):
            raise ValueError("match is 'exact' or 'shape'")
        if not sessions:
            raise ValueError("a replay needs at least one recorded session")
        self.sessions = [[x for x in s.exchanges if x.response is not None] for s in sessions]
        self.match = match
        first = sessions[0]
        self.uid = bytes(uid if uid is not None else first.uid or b"")
        self.atr = first.atr or DEFAULT_ATR
        self.name = name
        self.mismatches: list[str] = []
        self.answered = 0  # commands answered from the trace
        self._session = 0
        self._cursor = 0
        self._used_in_session = False

    @classmethod
    def from_file(cls, path: str | Path, **options) -> "ReplayCard":
        return cls(read_trace(path), **options)

    def power_on(self) -> bytes:
        if self._used_in_session:  # a new tap: the next recorded session
            self._session = (self._session + 1) % len(self.sessions)
            self._cursor = 0
            self._used_in_session = False
        return self.atr

    reset = power_on

    def power_off(self) -> None:
        pass

    def _find(self, command: bytes) -> int | None:
        recorded = self.sessions[self._session]
        if self._cursor < len(recorded):
            expected = recorded[self._cursor].command
            if expected == command:
                return self._cursor
            if self.match == "shape" and len(expected) == len(command) and expected[:4] == command[:4]:
                return self._cursor
        return next((i for i, x in enumerate(recorded) if x.command == command), None)

    def process(self, raw: bytes) -> bytes:
        raw = bytes(raw)
        self._used_in_session = True
        i = self._find(raw)
        if i is not None:
            x: Exchange = self.sessions[self._session][i]
            self._cursor = i + 1
            self.answered += 1
            return x.response
        if raw == GET_UID and self.uid:  # readers ask for it whether or not the trace did
            return respond(SW_OK, self.uid)
        recorded = self.sessions[self._session]
        expected = recorded[self._cursor].command.hex().upper() if self._cursor < len(recorded) else "the end of the trace"
        self.mismatches.append(f"session {self._session + 1}: got {raw.hex().upper()}, the trace has {expected}")
        if len(raw) >= 4 and raw[1] == 0xA4:
            return respond(SW_FILE_NOT_FOUND)
        return respond(SW_INS_NOT_SUPPORTED)
