"""The `tapstack` command: one group per program.

Each program's group is imported when it is asked for, so an installation with one extra
(`pip install 'tapstack[gateway]'`) runs `tapstack gateway ...` without the terminal's or
the wallet's dependencies.
"""
from __future__ import annotations

import importlib

import click

PROGRAMS = {  # name -> (module:attribute, short help)
    "gateway": ("gateway.cli:cli", "The payment gateway (extra: gateway)."),
    "terminal": ("terminal.cli:cli", "The reader terminal: validator, till (extra: terminal)."),
    "wallet": ("wallet.cli:cli", "The wallet emulator and app (extra: wallet)."),
    "demo": ("tapstack.demo:demo_command", "Run the whole pilot end to end (extra: all)."),
    "test": ("tapstack.testing.cli:cli", "Run tap scenarios over the emulated readers (extra: all)."),
}


def _load(name: str) -> click.Command:
    module, _, attribute = PROGRAMS[name][0].partition(":")
    command = getattr(importlib.import_module(module), attribute)
    if name == "wallet":
        _add_relay(command)
    return command


def _add_relay(wallet_cli: click.Group) -> None:
    """`tapstack wallet relay`: a real card on a PC/SC reader into the emulated stack. It needs a
    reader and the trace format, which are the terminal's; the wallet never imports the terminal."""
    if "relay" in wallet_cli.commands:
        return
    from terminal.readers import open_reader
    from terminal.trace import TraceRecorder, read_trace
    from wallet.relay import relay_command

    wallet_cli.add_command(relay_command(open_reader, TraceRecorder, read_trace))


class Programs(click.Group):
    def list_commands(self, ctx):
        return list(PROGRAMS)

    def get_command(self, ctx, name):
        if name not in PROGRAMS:
            return None
        try:
            return _load(name)
        except ImportError as e:
            return _missing(name, e)

    def format_commands(self, ctx, formatter):  # the list without importing every program
        with formatter.section("Commands"):
            formatter.write_dl([(name, text) for name, (_, text) in PROGRAMS.items()])


def _missing(name: str, error: ImportError) -> click.Command:
    @click.command(name, context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
                   add_help_option=False)
    def missing():
        raise click.ClickException(f"'tapstack {name}' needs what this installation lacks ({error}): "
                                   f"pip install 'tapstack[{'all' if name in ('demo', 'test') else name}]'")
    return missing


@click.group(cls=Programs)
@click.version_option(package_name="tapstack")
def main():
    """tapstack: gateway, reader terminal and wallet emulator of the mobile-payment pilots."""
