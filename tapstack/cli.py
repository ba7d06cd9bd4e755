"""The `tapstack` command: one group per program."""
import click

from gateway.cli import cli as gateway_cli
from tapstack.testing.cli import cli as test_cli
from tapstack.demo import demo_command
from terminal.cli import cli as terminal_cli
from terminal.readers import open_reader
from terminal.trace import TraceRecorder, read_trace
from wallet.cli import cli as wallet_cli
from wallet.relay import relay_command


@click.group()
@click.version_option(package_name="tapstack")
def main():
    """tapstack: gateway, reader terminal and wallet emulator of the mobile-payment pilots."""


main.add_command(gateway_cli, "gateway")
main.add_command(terminal_cli, "terminal")
main.add_command(wallet_cli, "wallet")
# `tapstack wallet relay`: a real card on a PC/SC reader into the emulated stack. It needs a
# reader and the trace format, which are the terminal's; the wallet never imports the terminal.
wallet_cli.add_command(relay_command(open_reader, TraceRecorder, read_trace))
main.add_command(demo_command, "demo")
main.add_command(test_cli, "test")
