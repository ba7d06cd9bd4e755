"""Virtual readers over every transport, scripted alike: the Field and the Stage behind it.

A Field is a reader plus the card side that feeds it:

    mock         terminal.readers.mock.MockReader, in-process
    pcscd+vpcd   the real pcscd through pyscard; the card speaks vpcd (wallet.transports.vpcd)
    nfcpy-udp    nfcpy's ContactlessFrontend on udp; the card is an ISO-DEP target (wallet.transports.nfc_udp)

    field.present(card) / field.remove() / field.tear_after(n) / field.slow(seconds)
    session = field.tap(card)      # present, then wait for the reader's session

A Stage owns what fields share: the one pcscd of the machine (started on first need,
stopped by pid at close) and its two vpcd slots. One pcscd carries one vpcd entry of two
slots, so at most two pcscd fields are open at a time.
"""
from __future__ import annotations

import time

from wallet import pcscd as pcscd_harness

TRANSPORTS = ("mock", "pcscd+vpcd", "nfcpy-udp")
ALIASES = {"mock": "mock", "pcscd": "pcscd+vpcd", "pcscd+vpcd": "pcscd+vpcd", "vpcd": "pcscd+vpcd",
           "nfcpy": "nfcpy-udp", "nfcpy-udp": "nfcpy-udp", "nfc": "nfcpy-udp"}


class StageError(RuntimeError):
    """A transport that cannot be set up here (pcscd missing, slots used up); one line."""


def parse_transports(text: str | list[str] | tuple[str, ...]) -> list[str]:
    """"mock,pcscd" or ["all"] -> canonical transport names, in the order of TRANSPORTS."""
    names = text.split(",") if isinstance(text, str) else list(text)
    wanted: set[str] = set()
    for name in (n.strip().lower() for n in names):
        if not name:
            continue
        if name == "all":
            wanted.update(TRANSPORTS)
        elif name in ALIASES:
            wanted.add(ALIASES[name])
        else:
            raise ValueError(f"unknown transport {name!r}: use mock, pcscd, nfcpy or all")
    if not wanted:
        raise ValueError("no transport named: use mock, pcscd, nfcpy or all")
    return [t for t in TRANSPORTS if t in wanted]


class Field:
    """One reader and the card side feeding it, scripted alike on every transport.

    `exchanges` is every command the card answered in this field and its answer (None:
    torn), as the card saw them: 61xx, GET RESPONSE and 6Cxx included. The pytest plugin
    shows them, card numbers masked, when a test fails.
    """

    def __init__(self, kind: str, reader, card_side, transport=None, on_close=None):
        self.kind = kind
        self.reader = reader
        self.card_side = card_side  # MockReader, VpcdCard or NfcUdpCard
        self.transport = transport  # the card-side thread, None for the mock
        self._on_close = on_close
        self._closed = False
        self._log: list[tuple[bytes, bytes | None]] = []
        if transport is not None:
            transport.on_exchange = lambda command, response: self._log.append((bytes(command), response))

    @property
    def exchanges(self) -> list[tuple[bytes, bytes | None]]:
        if self.transport is None:  # the mock reader keeps its transcript itself
            return [(x.command, x.response) for x in self.card_side.transcript]
        return list(self._log)

    def present(self, card=None):
        self.card_side.present(card)

    def remove(self):
        self.card_side.remove()

    def tear_after(self, n: int):
        self.card_side.tear_after(n)

    def slow(self, delay: float):
        self.card_side.slow(delay)

    def tap(self, card=None, timeout: float = 5.0):
        """Present the card and return the reader's session (a terminal.readers CardSession:
        `transmit(apdu) -> response`, `.uid`, `.atr`); AssertionError if none comes."""
        self.present(card)
        session = self.reader.wait_for_card(timeout)
        assert session is not None, f"{self.kind}: no card seen within {timeout} s"
        return session

    def take_away(self, timeout: float = 5.0):
        """Remove the card and wait until the reader sees its field empty."""
        self.remove()
        assert self.reader.wait_for_removal(timeout), f"{self.kind}: the card still seen after {timeout} s"

    def close(self):
        if self._closed:
            return
        self._closed = True
        try:
            if self.transport is not None:
                self.transport.stop()
            self.reader.close()
        finally:
            if self._on_close is not None:
                self._on_close()
                self._on_close = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Stage:
    """Opens Fields on any transport; starts pcscd the first time a pcscd field is wanted.

    daemon: a wallet.pcscd.Pcscd already running (the Stage then never stops it).
    reuse: use a pcscd already running on the machine when it serves two vpcd readers (a
    desktop's pcscd with Debian's vpcd configuration), rather than refusing to start.
    wait: seconds to wait for a pcscd of another test run to end before failing.
    """

    def __init__(self, daemon: pcscd_harness.Pcscd | None = None, reuse: bool = False, wait: float = 0.0,
                 say=None):
        self.daemon = daemon
        self.reuse = reuse
        self.wait = wait  # seconds to wait for another test run's pcscd to end before giving up
        self.say = say or (lambda line: None)  # a line for the person waiting
        self._own_daemon = False
        self._slots_in_use: set[int] = set()
        self._freed_at: dict[int, float] = {}  # slot -> when its last field closed
        self._failed: str | None = None

    def pcscd(self) -> pcscd_harness.Pcscd:
        """The pcscd of the fields: started on first need (or reused, with reuse=True).

        Another pcscd in the way is said at once: whose it is and what to do. Only one that
        belongs to another test run is waited for (up to `wait` seconds): it ends by itself."""
        if self._failed is not None:
            raise StageError(self._failed)
        if self.daemon is None:
            deadline = time.monotonic() + self.wait
            said = False
            while True:
                try:
                    self.daemon = pcscd_harness.start(n_readers=2, reuse=self.reuse)
                    break
                except pcscd_harness.PcscdBusy as error:
                    owner = pcscd_harness.pcscd_owner(error.pid)
                    if owner.kind == "this":  # started by this very process (a test session running pytest
                        try:                  # in-process): ours to share, never to stop
                            self.daemon = pcscd_harness.start(n_readers=2, reuse=True)
                            break
                        except pcscd_harness.PcscdError:
                            pass
                    if owner.kind != "tests" or time.monotonic() >= deadline:
                        self._failed = f"pcscd+vpcd cannot start: {error}"
                        raise StageError(self._failed) from None
                    if not said:
                        said = True
                        self.say(f"waiting up to {deadline - time.monotonic():.0f} s for another test run's pcscd "
                                 f"to end: {error}")
                    time.sleep(0.5)
                except pcscd_harness.PcscdError as error:
                    self._failed = f"pcscd+vpcd cannot start: {error}"
                    raise StageError(self._failed) from None
            self._own_daemon = self.daemon.started_here
        return self.daemon

    def open(self, kind: str) -> Field:
        kind = ALIASES.get(kind, kind)
        if kind == "mock":
            from terminal.readers.mock import MockReader

            reader = MockReader()
            return Field(kind, reader, reader)
        if kind == "pcscd+vpcd":
            return self._open_pcscd()
        if kind == "nfcpy-udp":
            from terminal.readers.nfc import NfcReader
            from wallet.transports.nfc_udp import NfcUdpCard

            port = pcscd_harness.free_ports(1)[0]
            card_side = NfcUdpCard(None, port).start()
            try:
                reader = NfcReader(f"udp:127.0.0.1:{port}")
            except Exception:
                card_side.stop()
                raise
            return Field(kind, reader, card_side, card_side)
        raise StageError(f"unknown transport {kind!r}: use one of {', '.join(TRANSPORTS)}")

    def _open_pcscd(self) -> Field:
        from terminal.readers.pcsc import PcscReader
        from wallet.transports.vpcd import VpcdCard

        daemon = self.pcscd()
        free = [i for i in range(len(daemon.readers)) if i not in self._slots_in_use]
        if not free:
            raise StageError(f"pcscd serves {len(daemon.readers)} vpcd readers and all are in use")
        # pcscd notices a card gone only at its next status poll (up to 400 ms): the slot freed
        # longest ago is the one most likely seen empty already, so opening rarely waits
        slot = min(free, key=lambda i: self._freed_at.get(i, 0.0))
        vpcd_reader = daemon.readers[slot]
        card_side = VpcdCard(None, vpcd_reader.port).start()
        reader = PcscReader(vpcd_reader.pcsc_name)
        self._slots_in_use.add(slot)
        field = Field("pcscd+vpcd", reader, card_side, card_side, on_close=lambda: self._free(slot))
        if not reader.wait_for_removal(3):
            holder = pcscd_harness.slot_holder(vpcd_reader.port)
            field.close()
            raise StageError(_slot_taken(vpcd_reader, holder))
        return field

    def _free(self, slot: int) -> None:
        self._slots_in_use.discard(slot)
        self._freed_at[slot] = time.monotonic()

    def close(self) -> None:
        self._failed = None
        if self._own_daemon and self.daemon is not None:
            self.daemon.stop()
        self.daemon = None
        self._own_daemon = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _slot_taken(reader: pcscd_harness.VpcdReader, holder: pcscd_harness.Holder | None) -> str:
    where = f"the vpcd slot {reader.pcsc_name!r} (port {reader.port})"
    if holder is None:
        return (f"{where} still holds a card from earlier and nothing here presents it: the card program "
                "that did has gone, or pcscd has not noticed yet; run again in a few seconds")
    if holder.kind == "this":
        return (f"{where} still holds a card from an earlier field of this test run that was not closed: "
                "close each Field you open (field.close(), or use the field fixture)")
    return (f"{where} already holds a card that {holder.describe()} presents: stop it (Ctrl-C where it runs, or "
            f"kill {holder.pid}), then run again")
