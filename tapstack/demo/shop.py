"""The corner shop of the demo: `tapstack terminal till` run as its own process, the way a
shop runs it, with its reader on nfcpy's udp emulation (the card side is the demo's).

The cashier types on the till's input (`sale 12.50 demo-3`, `qr`, `quit`) and reads its
panel (the SALE, QR, APPROVED and DECLINED lines of docs/till.md). The shopper pays the way
the plan says: a purse tap (the phone presented on the till's reader; paid offline,
journalled, uploaded and cleared to the shop), the wallet's signed pay code (its screen
saved as a PNG where the till's camera looks, `--qr-dir`), or the till's checkout QR (the
till saves it, `--qr-out`; the wallet app scans it and pays, the till polls until paid).
`quit` ends the till, which uploads what it journalled before it exits.
"""
from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

from protocol.currency import decimal_text
from tapstack.demo.stack import Console, DemoError, tapstack_command

START_WAIT = 30.0  # seconds for the till to open its reader and journal
STEP_WAIT = 15.0  # seconds for the till to answer one step of a sale
QUIT_WAIT = 30.0  # seconds for the till to upload its journal and exit


class Shop:
    """The till process, with the card side of its reader and the files it reads and writes."""

    def __init__(self, url: str, key_id: str, secret: bytes, token_key: bytes, currency: str, data_dir: Path,
                 log: Path):
        from wallet.pcscd import free_ports
        from wallet.transports.nfc_udp import NfcUdpCard

        self.currency = currency
        self.screens = data_dir / "till"  # what the till showed (checkout codes)
        self.camera = self.screens / "camera"  # what was held up to the till's camera (pay codes)
        self.camera.mkdir(parents=True, exist_ok=True)
        self.journal = data_dir / "validators" / "till-1.journal"
        self.journal.parent.mkdir(parents=True, exist_ok=True)
        self.qr_out = self.screens / "checkout.png"
        key_file, token_file = write_secret(data_dir / "keys" / "till-1.key", f"{key_id}:{secret.hex()}"), \
            write_secret(data_dir / "keys" / "token.key", token_key.hex())
        self.sales: Counter = Counter()  # method -> sales paid
        port = free_ports(1)[0]
        self.transport = NfcUdpCard(None, port).start()
        try:
            self.till = Console("till 1", tapstack_command(
                "terminal", "till", "--reader", f"udp:127.0.0.1:{port}", "--gateway", url,
                "--terminal-key", f"@{key_file}", "--token-key", f"@{token_file}", "--currency", currency,
                "--journal", str(self.journal), "--qr-dir", str(self.camera), "--qr-out", str(self.qr_out)), log)
        except BaseException:
            self.transport.stop()
            raise

    @property
    def pid(self) -> int:
        return self.till.pid

    def check_open(self) -> None:
        """DemoError, with the last lines of its log, when the till has stopped."""
        if not self.till.running():
            raise self.till.stopped()

    def ready(self) -> None:
        """Wait for the till's first line: its reader and journal are open."""
        self.till.expect("till ", timeout=START_WAIT)

    def sell(self, n: int, amount: int, method: str, app, card) -> None:
        """One sale of `amount`, paid by `method` (tap, paycode, checkout) from the shopper's
        wallet app and card; DemoError when the till did not get paid."""
        from wallet import qr as wallet_qr

        reference = f"demo-{n}"
        self.till.type(f"sale {decimal_text(amount, self.currency)} {reference}")
        self.till.expect("SALE", containing=f"ref {reference} ", timeout=STEP_WAIT)
        if method == "tap":
            self.transport.present(card)
            try:
                answer = self._outcome()
            finally:
                self.transport.remove()
        elif method == "paycode":
            screen = self.screens / f"paycode-{n}.png"  # the phone's screen, held up to the till's camera
            wallet_qr.write(app.pay_code(), screen)
            os.replace(screen, self.camera / screen.name)  # whole, never half-written, in front of the camera
            answer = self._outcome()
        else:
            self.till.type("qr")
            self.till.expect("QR ", timeout=STEP_WAIT)
            shown = self.screens / f"checkout-{n}.png"
            shown.write_bytes(self.qr_out.read_bytes())  # kept: the next sale's code replaces it
            app.pay(app.read(shown))
            answer = self._outcome()  # at the till's next poll of the checkout
        if not answer.startswith("APPROVED"):
            raise DemoError(f"sale {n} by {method} was not paid: {' '.join(answer.split())}")
        self.sales[method] += 1

    def _outcome(self) -> str:
        return self.till.expect("APPROVED", "DECLINED", timeout=STEP_WAIT)

    def close_day(self) -> None:
        """`quit`: the till uploads the purse taps it journalled and exits; DemoError when it could not."""
        self.till.type("quit")
        status = self.till.finish(QUIT_WAIT)
        left = [line for line in self.till.log_path.read_text(errors="replace").splitlines()
                if line.startswith("taps left to upload")]
        if status != 0 or left:
            raise DemoError(f"the till ended badly (exit status {status}): {left[-1] if left else self.till.tail()}")

    def close(self) -> None:
        self.till.stop()
        self.transport.stop()


def write_secret(path: Path, text: str) -> Path:
    """A key file only its owner reads, for an `@FILE` option (a secret never on a command line)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text + "\n")
    return path
