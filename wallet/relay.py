"""`tapstack wallet relay`: a real card on a real reader, proxied into the emulated stack.

    tapstack wallet relay --from "pcsc:ACS ACR122U" --via vpcd --start-pcscd --out card.trace.jsonl

The card on the PC/SC reader named by --from is presented through vpcd (a card in the
real pcscd) or nfcpy's udp driver, as the wallet emulator presents its own cards; every
command the program on the other side sends goes to the real card and its answer comes
back. Each session (the other side powering the card) is written to the trace as one
session of terminal/trace.py's format, card numbers masked, so a session with a real card
becomes a replayable test (`type: replay` in a scenario).

The real card's UID and ATR are the relayed card's. Status words 61xx and 6Cxx are
completed on the real reader's side, so the relayed card answers as a T=1 card would.
The real card leaving its reader tears the relayed one; coming back presents it again.

The relay is the one wallet command that needs a reader and the trace format, which are
the terminal's: the wallet never imports the terminal, so tapstack/cli.py (which sees
every program) hands them in: `relay_command(open_reader, TraceRecorder, read_trace)`.
"""
from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO

from wallet.transports import CardTransport

ANSWER_GONE = bytes.fromhex("6F00")  # what the relayed card answers once the real one has gone


class RelayedCard:
    """A VirtualCard whose answers come from a real card's session. Each power-on from the
    other side starts a new trace session (written at its first command)."""

    def __init__(self, session, recorder: Callable, sink: IO[str] | None, reader: str, first_number: int = 1,
                 redact_purse: bool = False, on_gone: Callable[[], None] | None = None):
        self.session = session
        self.new_recorder = recorder  # terminal.trace.TraceRecorder
        self.sink = sink
        self.reader = reader
        self.uid = bytes(session.uid or b"")
        self.atr = bytes(session.atr)
        self.name = f"the card on {reader}"
        self.redact_purse = redact_purse
        self.on_gone = on_gone or (lambda: None)
        self.number = first_number - 1  # the trace session written last
        self.recorder = None  # the trace session of the other side's session now
        self.commands = 0
        self.gone = False
        self._lock = threading.Lock()

    def power_on(self) -> bytes:
        with self._lock:
            self.recorder = None  # a new session: its header goes out with its first command
        return self.atr

    reset = power_on

    def power_off(self) -> None:
        pass

    def process(self, raw: bytes) -> bytes:
        with self._lock:
            if self.gone:
                return ANSWER_GONE
            if self.recorder is None:
                self.number += 1
                self.recorder = self.new_recorder(self.session, self.sink, reader=self.reader, number=self.number,
                                                  uid=self.uid or None, redact_purse=self.redact_purse)
            self.commands += 1
            try:
                return self.recorder.transmit(bytes(raw))
            except Exception:  # the real card left (or its reader failed): recorded, and the relayed card tears
                self.gone = True
                self.on_gone()
                return ANSWER_GONE


def relay_once(source, monitor, transport: CardTransport, recorder: Callable, sink: IO[str] | None, *,
               number: int, stop: threading.Event, timeout: float | None, redact_purse: bool = False,
               say: Callable[[str], None] = print) -> RelayedCard | None:
    """Wait for a card on source, relay it through transport until it leaves (or stop);
    the RelayedCard, or None when no card came within timeout."""
    session = None
    waited = 0.0
    while session is None and not stop.is_set():
        session = source.wait_for_card(0.25)
        waited += 0.25
        if session is None and timeout is not None and waited >= timeout:
            return None
    if session is None:
        return None
    card = RelayedCard(session, recorder, sink, source.name, number, redact_purse,
                       on_gone=lambda: transport.tear_after(1))
    say(f"card on {source.name}: UID {card.uid.hex().upper() or '(none)'}, ATR {card.atr.hex().upper()}")
    transport.present(card)
    while not stop.is_set() and not card.gone:
        try:
            if monitor.wait_for_removal(0.25):
                break
        except Exception as e:  # the reader (or its pcscd) went away, and the card with it
            say(f"{source.name} went away: {e}")
            break
    transport.remove()
    card.gone = True
    session.close()
    say(f"card left {source.name}: {card.commands} command(s) relayed in {card.number - number + 1} session(s)")
    return card


# --- the command ------------------------------------------------------------------------

def relay_command(open_reader: Callable, recorder: Callable, read_trace: Callable):
    """The `relay` command, given the terminal's open_reader, TraceRecorder and read_trace."""
    import click

    from wallet.emulate import DEFAULT_PORTS, EmulateError, open_transport, pcscd_for_the_card

    @click.command("relay")
    @click.option("--from", "source_spec", required=True, metavar="pcsc:READER",
                  help="The PC/SC reader holding the real card (pcsc:NAME: the first reader whose name holds NAME).")
    @click.option("--via", type=click.Choice(["vpcd", "nfcpy-udp"]), default="vpcd", show_default=True,
                  help="vpcd: a card in the real pcscd; nfcpy-udp: an ISO-DEP target for nfcpy's udp reader.")
    @click.option("--host", default="127.0.0.1", show_default=True, help="Where the vpcd driver or udp reader is.")
    @click.option("--port", type=click.IntRange(1, 65535),
                  help="vpcd driver port (default 35963, Debian's) or udp port (default 54321).")
    @click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path),
                  help="Write every session to this trace file (JSON lines, card numbers masked).")
    @click.option("--append", is_flag=True, help="Add the sessions to an existing trace file.")
    @click.option("--redact-purse", is_flag=True, help="Also zero a purse's card key and signatures in the trace.")
    @click.option("--cards", "max_cards", type=click.IntRange(1),
                  help="Stop after relaying this many card presentations (default: until Ctrl-C).")
    @click.option("--timeout", type=click.FloatRange(0.1), help="Seconds to wait for a card (default: no limit).")
    @click.option("--start-pcscd", is_flag=True,
                  help="--via vpcd: start pcscd with a vpcd reader for the relayed card (not with --from on "
                       "a reader of the same pcscd).")
    def relay(source_spec, via, host, port, out_path, append, redact_purse, max_cards, timeout, start_pcscd):
        """Relay the real card on a PC/SC reader into the emulated stack, recording the trace."""
        kind, _, name = source_spec.partition(":")
        if kind.lower() != "pcsc":
            raise click.UsageError("--from is a PC/SC reader: pcsc:READER (e.g. \"pcsc:ACS ACR122U\")")
        number = 1
        if append and out_path is not None and out_path.exists():
            try:
                number = len(read_trace(out_path)) + 1
            except ValueError as e:  # terminal.trace.TraceError
                raise click.ClickException(str(e)) from None
        daemon = None
        if start_pcscd:
            daemon, port = pcscd_for_the_card(via, port)
        try:
            source, monitor = open_reader(source_spec), open_reader(source_spec)  # the monitor has its own context
        except Exception as e:  # terminal.readers.ReaderError: no such reader, pcscd not running
            if daemon is not None:
                daemon.stop()
            raise click.ClickException(str(e)) from None
        sink = None
        try:
            if out_path is not None:
                try:
                    sink = open(out_path, "a" if append else "w", encoding="utf-8")
                except OSError as e:
                    raise click.ClickException(f"cannot write {out_path}: {e.strerror or e}") from None
            try:
                transport = open_transport(via, None, port, host)
            except EmulateError as e:
                raise click.ClickException(str(e)) from None
            where = f"{host}:{port or DEFAULT_PORTS[via]}"
            click.echo(f"relaying the card on {name or 'the first PC/SC reader'} via {via} at {where}"
                       + (f", trace to {out_path}" if out_path else "") + "; Ctrl-C to stop", err=True)
            stop = threading.Event()
            main_thread = threading.current_thread() is threading.main_thread()
            if main_thread:
                previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
            transport.start()
            relayed = 0
            try:
                while not stop.is_set() and (max_cards is None or relayed < max_cards):
                    try:
                        card = relay_once(source, monitor, transport, recorder, sink, number=number, stop=stop,
                                          timeout=timeout, redact_purse=redact_purse,
                                          say=lambda line: click.echo(line, err=True))
                    except OSError as e:
                        raise click.ClickException(f"{source.name}: {e}") from None
                    except Exception as e:  # terminal.readers.ReaderError: the reader or pcscd went away
                        raise click.ClickException(f"{source.name}: {e}") from None
                    if card is None:
                        if not stop.is_set():
                            raise click.ClickException(f"no card on {source.name} within {timeout:g} s")
                        break
                    relayed += 1
                    number = card.number + 1
            except KeyboardInterrupt:
                pass
            finally:
                stop.set()
                transport.stop()
                if main_thread:
                    signal.signal(signal.SIGTERM, previous)
            if out_path is not None:
                click.echo(f"{number - 1} session(s) in {out_path}", err=True)
        finally:
            if sink is not None:
                sink.close()
            source.close()
            monitor.close()
            if daemon is not None:
                daemon.stop()

    return relay
