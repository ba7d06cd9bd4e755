"""`tapstack wallet emulate`: present a virtual card to a reader stack until stopped.

The card (a wallet file's purse, the demo purse, an EMV bank card or a plain UID card)
goes out through a transport: the real pcscd via vsmartcard-vpcd, or nfcpy's udp driver.
A schedule can take it away and bring it back (--present-for, --absent-for, --repeat), and
the card can be torn after its N-th command. Traces print with any card number masked.
"""
from __future__ import annotations

import os
import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from protocol.emv import luhn_valid
from wallet.card import VirtualCard, plain_uid_card
from wallet.transports import CardTransport

CARD_KINDS = ("wallet", "purse", "emv", "uid")
DEFAULT_PORTS = {"vpcd": 0x8C7B, "nfcpy-udp": 54321}  # Debian's vpcd port; nfcpy's udp default

class EmulateError(Exception):
    """A card or transport that cannot be set up; the message is one line for the user."""


# EMV data objects that carry the PAN: 5A the PAN, 57 track 2 equivalent, 9F6B track 2 data.
_PAN_TAGS = ("5A", "57", "9F6B")


def mask_pans(hex_text: str) -> str:
    """Hex text of APDUs with the card number in every PAN-carrying EMV data object masked
    to its first 6 and last 4 digits (what a receipt may show)."""
    text = hex_text.upper()
    out, i = [], 0
    while i < len(text):
        tag = next((t for t in _PAN_TAGS if text.startswith(t, i)), None)
        if tag is not None:
            start = i + len(tag) + 2  # after the tag and a one-byte length
            run = 0
            while start + run < len(text) and text[start + run].isdigit() and run < 19:
                run += 1
            pan = next((n for n in range(run, 11, -1) if luhn_valid(text[start:start + n])), 0)
            if pan:
                out.append(text[i:start + 6] + "*" * (pan - 10) + text[start + pan - 4:start + pan])
                i = start + pan
                continue
        out.append(text[i:i + 2])
        i += 2
    return "".join(out)


def build_card(kind: str, wallet: Path | None = None, uid: bytes | None = None) -> VirtualCard:
    """The card to present. "wallet" needs a wallet file; "purse" is the demo purse (test keys)."""
    if kind == "wallet" or (kind == "purse" and wallet is not None):
        if wallet is None:
            raise EmulateError("--card wallet needs --wallet FILE")
        from wallet.purse import purse_card
        from wallet.state import FileStore, WalletFileError

        try:
            store = FileStore.open(wallet)
            file_uid = bytes.fromhex(store.doc.get("uid", "")) or None
        except (WalletFileError, ValueError) as error:
            raise EmulateError(str(error)) from None
        return purse_card(store, uid or file_uid or _random_uid(), name=store.doc.get("name", "purse card"))
    if kind == "purse":
        from wallet.testcards import demo_purse_card

        demo = demo_purse_card(uid=uid)
        return demo.card
    if kind == "emv":
        from wallet.emv_card import emv_card

        return emv_card(uid or _random_uid())
    if kind == "uid":
        return plain_uid_card(uid or b"\x04" + os.urandom(6))
    raise EmulateError(f"unknown card {kind!r}: use one of {', '.join(CARD_KINDS)}")


def _random_uid() -> bytes:
    return b"\x08" + os.urandom(3)  # ISO 14443-3 random UID, as phones show


def open_transport(via: str, card: VirtualCard, port: int | None = None, host: str = "127.0.0.1",
                   on_exchange: Callable | None = None) -> CardTransport:
    port = port or DEFAULT_PORTS.get(via)
    if via == "vpcd":
        from wallet.transports.vpcd import VpcdCard

        return VpcdCard(card, port, host, on_exchange=on_exchange)
    if via == "nfcpy-udp":
        from wallet.transports.nfc_udp import NfcUdpCard

        return NfcUdpCard(card, port, host, on_exchange=on_exchange)
    raise EmulateError(f"unknown transport {via!r}: use vpcd or nfcpy-udp")


@dataclass(frozen=True)
class Schedule:
    present_for: float | None = None  # None: stay in the field until stopped
    absent_for: float = 1.0
    repeat: int | None = None  # presentations; None: until stopped


def run(transport: CardTransport, schedule: Schedule, stop: threading.Event,
        say: Callable[[str], None] = print) -> int:
    """Present and take away the card on schedule until stop is set or the repeats are done.
    A card torn away comes back after absent_for. Returns how many times it was presented."""
    shown = 0
    while not stop.is_set() and (schedule.repeat is None or shown < schedule.repeat):
        transport.present()
        shown += 1
        say(f"card presented ({shown})")
        if schedule.present_for is None:
            while not stop.is_set() and transport.presented:
                stop.wait(0.1)
        else:
            stop.wait(schedule.present_for)
        if stop.is_set():
            break
        transport.remove()
        say("card taken away")
        if schedule.repeat is not None and shown >= schedule.repeat:
            break
        stop.wait(schedule.absent_for)
    return shown


def pcscd_for_the_card(via: str, port: int | None):
    """--start-pcscd: a pcscd with a vpcd reader for the card (started here, or one running that
    has it) and the port its slot listens on; a click error in one line otherwise."""
    import click

    from wallet import pcscd

    if via != "vpcd":
        raise click.UsageError("--start-pcscd goes with --via vpcd")
    try:
        daemon = pcscd.start(1, port=port)
    except pcscd.PcscdError as error:
        raise click.ClickException(str(error)) from None
    return daemon, daemon.readers[0].port


def _hint_if_never_connected(transport, stop: threading.Event, where: str, daemon, say, after: float = 3.0) -> None:
    """Say why, once, when the card has been in the field `after` seconds and the vpcd driver
    never took its connection. Time out of the field (a schedule) does not count."""
    waited = 0.0
    while not stop.is_set() and waited < after:
        if transport.connected.is_set():
            return
        if transport.presented:
            waited += 0.1
        stop.wait(0.1)
    if stop.is_set() or transport.connected.is_set():
        return
    if daemon is not None and daemon.started_here:
        say(f"the vpcd driver of the pcscd started here (pid {daemon.pid}) has not taken the card at {where} "
            f"after {after:g} s; its log: {daemon.log_path}")
    elif daemon is not None:
        say(f"the pcscd reused here (pid {daemon.pid}) has not taken the card at {where} after {after:g} s: "
            "another card may hold that slot")
    else:
        say(f"waiting for the vpcd driver at {where}: is pcscd running with a vpcd reader on that port? "
            "(--start-pcscd starts one)")


# --- the command ------------------------------------------------------------------------

def _command():
    import click

    @click.command("emulate")
    @click.option("--via", type=click.Choice(["vpcd", "nfcpy-udp"]), default="vpcd", show_default=True,
                  help="vpcd: a card in the real pcscd; nfcpy-udp: an ISO-DEP target for nfcpy's udp reader.")
    @click.option("--host", default="127.0.0.1", show_default=True, help="Where the vpcd driver or udp reader is.")
    @click.option("--port", type=click.IntRange(1, 65535),
                  help="vpcd driver port (default 35963, Debian's) or udp port (default 54321).")
    @click.option("--card", "kind", type=click.Choice(CARD_KINDS), default="purse", show_default=True,
                  help="wallet: the purse of --wallet FILE; purse: the demo purse (test keys); emv; uid.")
    @click.option("--wallet", "wallet_file", type=click.Path(dir_okay=False, path_type=Path),
                  help="Wallet file whose purse to present (its balance is saved there).")
    @click.option("--uid", help="Card UID in hex (4, 7 or 10 bytes); default: the wallet's or a random one.")
    @click.option("--tear-after", type=click.IntRange(1),
                  help="Tear the card away after it processes its N-th command.")
    @click.option("--slow", type=click.FloatRange(0), default=0.0, help="Seconds the card thinks before each answer.")
    @click.option("--present-for", type=click.FloatRange(0), help="Seconds in the field per presentation.")
    @click.option("--absent-for", type=click.FloatRange(0), default=1.0, show_default=True,
                  help="Seconds out of the field between presentations (also after a tear).")
    @click.option("--repeat", type=click.IntRange(1), help="Number of presentations (default: until Ctrl-C).")
    @click.option("--start-pcscd", is_flag=True,
                  help="Start pcscd with a vpcd reader on a free port for this run (or reuse one that has it).")
    @click.option("-v", "--verbose", is_flag=True, help="Print every APDU exchanged (card numbers masked).")
    def emulate(via, host, port, kind, wallet_file, uid, tear_after, slow, present_for, absent_for, repeat,
                start_pcscd, verbose):
        """Present a virtual card to a reader until Ctrl-C."""
        try:
            uid_bytes = bytes.fromhex(uid) if uid else None
        except ValueError:
            raise click.BadParameter("not hex", param_hint="--uid") from None
        if uid_bytes is not None and len(uid_bytes) not in (4, 7, 10):
            raise click.BadParameter("a UID is 4, 7 or 10 bytes", param_hint="--uid")
        try:
            card = build_card(kind, wallet_file, uid_bytes)
        except EmulateError as error:
            raise click.ClickException(str(error)) from None

        def trace(command: bytes, response: bytes | None):
            if verbose:
                answer = mask_pans(response.hex()) if response is not None else "(torn: no answer)"
                click.echo(f"{mask_pans(command.hex())} -> {answer}")

        daemon = None
        if start_pcscd:
            daemon, port = pcscd_for_the_card(via, port)
            click.echo(f"pcscd {'started' if daemon.started_here else 'reused'} (pid {daemon.pid}), "
                       f"reader \"{daemon.readers[0].pcsc_name}\"")
        transport = open_transport(via, card, port, host, trace)
        transport.slow(slow)
        if tear_after:
            transport.tear_after(tear_after)
        where = f"{host}:{port or DEFAULT_PORTS[via]}"
        click.echo(f"presenting {card.name} (UID {card.uid.hex().upper()}) via {via} at {where}; Ctrl-C to stop")
        stop = threading.Event()
        main_thread = threading.current_thread() is threading.main_thread()
        if main_thread:  # `kill` and service managers send SIGTERM: stop as on Ctrl-C (and stop our pcscd)
            previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
        transport.start()
        if via == "vpcd":  # a card waiting for a driver that is not there looks like a hang: say why
            watcher = threading.Thread(target=_hint_if_never_connected, daemon=True,
                                       args=(transport, stop, where, daemon, lambda line: click.echo(line, err=True)))
            watcher.start()
        try:
            run(transport, Schedule(present_for, absent_for, repeat), stop,
                say=(lambda line: click.echo(line)) if verbose or present_for else (lambda line: None))
        except KeyboardInterrupt:
            pass
        finally:
            stop.set()
            transport.stop()
            if daemon is not None:
                daemon.stop()
            if main_thread:
                signal.signal(signal.SIGTERM, previous)

    return emulate


emulate_command = _command()
