"""The card in a reader's field, as a test talks to it: what a scenario's `call` step gets.

    def read_points(card, minimum=0):                # called by - call: checks.py:read_points
        answer = card.select("F0434C554201")
        assert answer.sw == 0x9000, answer.describe()
        answer = card.send("80CA0000 02")             # hex text: {name} is a scenario variable
        points = int.from_bytes(answer.data, "big")
        assert points >= minimum
        return {"points": answer.data}                # new variables (bytes or hex text)

    card = CardChannel(field.tap(my_card))            # the same in a pytest test

`transmit(bytes) -> bytes` is the session's own (61xx and 6Cxx completed by the reader,
as a PC/SC application would); `send` and `select` return a protocol.apdu.ResponseAPDU
(`.data`, `.sw`, `.describe()`). A card leaving the field raises
terminal.readers.base.CardRemoved.
"""
from __future__ import annotations

from protocol.apdu import CommandAPDU, ResponseAPDU, parse_response, select_by_name
from tapstack.testing.expect import hex_bytes, substitute


class CardChannel:
    def __init__(self, session, variables: dict[str, str] | None = None, reader: str = "", transport: str = ""):
        self.session = session
        self.vars = variables if variables is not None else {}
        self.reader = reader
        self.transport = transport

    @property
    def uid(self) -> bytes | None:
        return self.session.uid

    @property
    def atr(self) -> bytes:
        return self.session.atr

    def transmit(self, apdu: bytes) -> bytes:
        return bytes(self.session.transmit(bytes(apdu)))

    def command(self, apdu: bytes | str, data: bytes | str | None = None, le: int | None = None) -> bytes:
        """The command bytes: hex text with {name} variables, or bytes; with data or le, apdu is
        the 4-byte header and Lc is counted."""
        raw = hex_bytes(substitute(apdu, self.vars), "apdu") if isinstance(apdu, str) else bytes(apdu)
        if data is None and le is None:
            return raw
        if len(raw) != 4:
            raise ValueError(f"with data or le, the apdu is the 4-byte header, not {len(raw)} bytes")
        body = hex_bytes(substitute(data, self.vars), "data") if isinstance(data, str) else bytes(data or b"")
        return CommandAPDU(*raw, body, le).to_bytes()

    def send(self, apdu: bytes | str, data: bytes | str | None = None, le: int | None = None) -> ResponseAPDU:
        return parse_response(self.transmit(self.command(apdu, data, le)))

    def select(self, aid: bytes | str) -> ResponseAPDU:
        aid = hex_bytes(substitute(aid, self.vars), "aid") if isinstance(aid, str) else bytes(aid)
        return parse_response(self.transmit(select_by_name(aid).to_bytes()))
