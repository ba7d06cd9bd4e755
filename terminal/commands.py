"""`tapstack terminal validator`, `tapstack terminal till`, and `terminal run`, their old alias.

Each command takes only its own program's options: the bus validator (terminal/bus.py) a
route, stop, direction, stop feed and fares; the shop till (terminal/till.py) its scripted
sales, checkout QR file and merchant key. The options both share (reader, gateway, keys,
journal, currency, issuer keys, camera frames, refresh period) are declared once here. The
settings each command makes, and their checks, are terminal/settings.py.

`terminal run [--mode bus|pos]` stays for scripts written before the split: it says once,
on stderr, which command to use instead, and runs it with the options it always took.
"""
from __future__ import annotations

from pathlib import Path

import click

from protocol.purse import MAX_TRANSACTION_AMOUNT
from protocol.uplink import parse_terminal_key
from terminal import bus, till
from terminal.settings import (DIRECTIONS, Settings, TillSettings, check_settings, default_terminal_id, hex_arg,
                               secret_text)
from terminal.journal import JournalError
from terminal.readers import SPEC_HELP
from terminal.readers import ReaderError as OpenError

DEPRECATED = ("tapstack terminal run is deprecated: use 'tapstack terminal validator' "
              "(or 'tapstack terminal till' for --mode pos)")


def _shared(command):
    """The options of every terminal program, outermost last."""
    for option in reversed([
        click.option("--reader", "reader_spec", default="pcsc", show_default=True, help=SPEC_HELP),
        click.option("--gateway", help="Gateway base URL, e.g. http://127.0.0.1:8000 (none: offline only)."),
        click.option("--terminal-key", help="KEY_ID:SECRET_HEX from 'POST /v1/terminals', or @FILE holding it."),
        # Required at a till too: it refuses bank and UID cards but journals and uploads each
        # refusal under the card's token, which must match the one the operator's validators use.
        click.option("--token-key", required=True,
                     help="Token key in hex (>= 16 bytes), or @FILE holding it; the operator's one, also at a till."),
        click.option("--issuer-key", "issuer_keys", multiple=True,
                     help="An issuer public key (64 hex digits) to trust before any download; repeatable."),
        click.option("--currency", default="CNY", show_default=True),
        click.option("--terminal-id", help="8-byte id in receipts (16 hex digits); default: from the key id."),
        click.option("--qr-frame", type=click.Path(dir_okay=False, path_type=Path),
                     help="An image file a camera rewrites; each new frame is scanned for a QR code."),
        click.option("--qr-dir", type=click.Path(file_okay=False, path_type=Path),
                     help="A directory watched for new QR frame images."),
        click.option("--refresh-every", type=click.FloatRange(1), default=60.0, show_default=True,
                     help="Seconds between downloads of keys, deny-list and fare rules."),
    ]):
        command = option(command)
    return command


def _journal(default: str):
    return click.option("--journal", type=click.Path(dir_okay=False, path_type=Path), default=default,
                        show_default=True)


def _bus_options(command):
    for option in reversed([
        click.option("--route", help="Route the validator starts on."),
        click.option("--direction", type=click.Choice(DIRECTIONS), default="on", show_default=True,
                     help="on at the entry door; off at the exit door, recording tap-offs "
                          "(a purse is not debited there)."),
        click.option("--stop", help="Stop the validator starts at."),
        click.option("--stop-feed", type=click.Path(dir_okay=False, path_type=Path),
                     help="JSON or CSV of stop changes (at, route, stop), followed as it changes."),
        click.option("--fare-rules", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                     help="Fare rules JSON to use until the gateway's are downloaded."),
        click.option("--fare", type=click.IntRange(1, MAX_TRANSACTION_AMOUNT),
                     help="Flat fare in minor units when there are no fare rules."),
        click.option("--max-taps", type=click.IntRange(1), help="Stop after this many taps."),
        click.option("--simulated-clock", is_flag=True,
                     help="Replays and simulations: the clock is set by 'clock TIME' lines on input "
                          "(ISO 8601 with offset); no card is decided before the first."),
        click.option("--machine-lines", is_flag=True,
                     help="For a program driving the validator: 'OK LINE' or 'ERR LINE: why' per input line, "
                          "'DECISION {json}' per decision (docs/validator.md)."),
    ]):
        command = option(command)
    return command


def _till_options(command):
    for option in reversed([
        click.option("--sales", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                     help="Till commands to run unattended, one a line (sale 12.50 ...)."),
        click.option("--qr-out", type=click.Path(dir_okay=False, path_type=Path), default="checkout-qr.png",
                     show_default=True, help="Where the checkout QR code is saved as PNG."),
        click.option("--merchant-key", help="Refund under the merchant's API key sk_... (or @FILE) "
                                            "instead of the till's terminal key."),
    ]):
        command = option(command)
    return command


def _keys(terminal_key, token_key, terminal_id, issuer_keys) -> dict:
    key_id, secret = parse_terminal_key(secret_text(terminal_key)) if terminal_key else (None, None)
    return {"key_id": key_id, "secret": secret, "token_key": hex_arg(secret_text(token_key), "--token-key"),
            "terminal_id": hex_arg(terminal_id, "--terminal-id") if terminal_id else default_terminal_id(key_id),
            "issuer_keys": tuple(hex_arg(k, "--issuer-key") for k in issuer_keys)}


def _start(program) -> None:
    """Run a program; bad settings end in one line (exit 1), never a traceback."""
    try:
        code = program()
    except (ValueError, OSError, JournalError, OpenError) as e:
        raise click.ClickException(str(e)) from None
    raise SystemExit(code)


def _validator(reader_spec, gateway, terminal_key, token_key, issuer_keys, currency, terminal_id, qr_frame, qr_dir,
               refresh_every, journal, route, direction, stop, stop_feed, fare_rules, fare, max_taps,
               simulated_clock=False, machine_lines=False) -> int:
    settings = Settings(route=route, stop=stop, reader=reader_spec, gateway=gateway, journal=journal,
                        stop_feed=stop_feed, fare_rules=fare_rules, fare=fare, currency=currency,
                        qr_frame=qr_frame, qr_dir=qr_dir, refresh_every=refresh_every, max_taps=max_taps,
                        direction=direction, simulated_clock=simulated_clock, machine_lines=machine_lines,
                        **_keys(terminal_key, token_key, terminal_id, issuer_keys))
    check_settings(settings)
    return bus.run(settings, out=click.echo)


def _till(reader_spec, gateway, terminal_key, token_key, issuer_keys, currency, terminal_id, qr_frame, qr_dir,
          refresh_every, journal, sales, qr_out, merchant_key) -> int:
    settings = TillSettings(reader=reader_spec, gateway=gateway, journal=journal, currency=currency,
                            qr_frame=qr_frame, qr_dir=qr_dir, qr_out=qr_out, sales=sales,
                            refresh_every=refresh_every,
                            merchant_key=secret_text(merchant_key) if merchant_key else None,
                            **_keys(terminal_key, token_key, terminal_id, issuer_keys))
    return till.run(settings, out=click.echo)


@click.command("validator")
@_shared
@_journal("validator-journal.db")
@_bus_options
def validator_command(**options):
    """Run a bus validator: tap, journal, upload; keeps working offline."""
    _start(lambda: _validator(**options))


@click.command("till")
@_shared
@_journal("till-journal.db")
@_till_options
def till_command(**options):
    """Run a shop till: ring up sales, take purse taps, pay codes and checkout QR codes."""
    _start(lambda: _till(**options))


@click.command("run")
@click.option("--mode", type=click.Choice(("bus", "pos")), default="bus", show_default=True)
@_shared
@_journal("validator-journal.db")
@_bus_options
@_till_options
def run_command(mode, sales, qr_out, merchant_key, route, direction, stop, stop_feed, fare_rules, fare, max_taps,
                simulated_clock, machine_lines, **shared):
    """Deprecated: 'terminal validator' (--mode bus) or 'terminal till' (--mode pos)."""
    click.echo(DEPRECATED, err=True)
    if mode == "pos":
        _start(lambda: _till(**shared, sales=sales, qr_out=qr_out, merchant_key=merchant_key))
    _start(lambda: _validator(**shared, route=route, direction=direction, stop=stop, stop_feed=stop_feed,
                              fare_rules=fare_rules, fare=fare, max_taps=max_taps,
                              simulated_clock=simulated_clock, machine_lines=machine_lines))
