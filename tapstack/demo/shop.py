"""The corner shop of the demo: the real till program (terminal.till.Till, what
`tapstack terminal till` runs) with its reader on nfcpy's udp emulation.

For each sale of the plan the cashier opens the sale, then the shopper pays the way the
plan says: a purse tap (the phone presented on the till's reader; paid offline,
journalled, uploaded and cleared to the shop), the wallet's signed pay code (its screen
saved as a PNG that the till reads as a camera frame), or the till's checkout QR (the
till saves it as a PNG, the wallet app scans it and pays, the till polls until paid).
Runs on the demo's own thread: the till's journal connection belongs to it.
"""
from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from tapstack.demo.stack import DemoError

ARRIVAL_TIMEOUT = 5.0
CHECKOUT_POLLS = 20


class Shop:
    def __init__(self, url: str, key_id: str, secret: bytes, data_dir: Path, log: Path):
        from protocol.uplink import Client
        from terminal.journal import Journal
        from terminal.readers.nfc import NfcReader
        from terminal.run import default_terminal_id
        from terminal.till import Till, TillSettings
        from terminal.uploader import Uploader
        from wallet.pcscd import free_ports
        from wallet.transports.nfc_udp import NfcUdpCard

        self.screens = data_dir / "till"
        self.screens.mkdir(parents=True, exist_ok=True)
        self.client = Client(url, key_id, secret)
        self.terminal_id = default_terminal_id(key_id)
        self.journal_path = data_dir / "validators" / "till-1.journal"
        self.sales: Counter = Counter()  # method -> sales paid
        self._log = open(log, "a", encoding="utf-8")
        port = free_ports(1)[0]
        self.transport = NfcUdpCard(None, port).start()
        self.reader = self.journal = self.uploader = None
        try:
            self.reader = NfcReader(f"udp:127.0.0.1:{port}")
            self.journal = Journal(self.journal_path, self.terminal_id)
            settings = TillSettings(reader=f"udp:127.0.0.1:{port}", gateway=url, key_id=key_id, secret=secret,
                                    journal=self.journal_path, terminal_id=self.terminal_id,
                                    qr_out=self.screens / "checkout.png")
            self.till = Till(settings, self.reader, self.journal, client=self.client,
                             out=lambda line: self._log.write(line + "\n"), pause=lambda s: None)
            self.uploader = Uploader(self.journal_path, self.terminal_id, self.client, _utc_now, idle=0.5)
            self.till.uploader = self.uploader
            self.uploader.start()
            self.till.desk.refresh()  # issuer keys (pay codes and purse certificates are checked offline)
        except BaseException:
            self.close()
            raise

    def sell(self, n: int, amount: int, method: str, app, card) -> None:
        """One sale of `amount`, paid by `method` (tap, paycode, checkout) from the shopper's
        wallet app and card; DemoError when the till did not get paid."""
        from terminal.run import read_qr_text
        from wallet import qr as wallet_qr

        if self.till.open_sale(amount, f"demo-{n}") is None:
            raise DemoError(f"the till could not open sale {n}")
        if method == "tap":
            result = self._tap(card)
        elif method == "paycode":
            screen = self.screens / f"paycode-{n}.png"  # the phone's screen, held up to the till's camera
            wallet_qr.write(app.pay_code(), screen)
            text = read_qr_text(screen)
            if text is None:
                raise DemoError(f"the till's camera found no code in {screen}")
            result = self.till.handle_code(text)
        else:
            self.till.show_checkout()
            shown = self.screens / f"checkout-{n}.png"
            shown.write_bytes(self.till.s.qr_out.read_bytes())  # kept: the next sale's code replaces it
            app.pay(app.read(shown))
            result = None
            for _ in range(CHECKOUT_POLLS):
                result = self.till.poll_checkout()
                if result is not None:
                    break
                time.sleep(0.1)
        if result is None or not result.approved:
            raise DemoError(f"sale {n} by {method} was not paid: "
                            f"{result.reason if result else 'the checkout never showed paid'}")
        self.sales[method] += 1

    def _tap(self, card):
        self.transport.present(card)
        try:
            session = self.reader.wait_for_card(ARRIVAL_TIMEOUT)
            if session is None:
                raise DemoError("the till's reader never saw the card")
            try:
                return self.till.handle_card(session)
            finally:
                session.close()
        finally:
            self.transport.remove()
            self.reader.wait_for_removal(ARRIVAL_TIMEOUT)

    def flush(self) -> None:
        """Upload the purse taps the till journalled (its uploader stopped)."""
        from terminal.uploader import upload_all

        if self.uploader is not None:
            self.uploader.stop(5)
            self.uploader = None
        upload_all(self.journal, self.client, _utc_now)

    def close(self) -> None:
        if self.uploader is not None:
            self.uploader.stop(5)
        self.transport.stop()
        if self.reader is not None:
            self.reader.close()
        if self.journal is not None:
            self.journal.close()
        self._log.close()


def _utc_now():
    from datetime import datetime, timezone

    return datetime.now(timezone.utc)
