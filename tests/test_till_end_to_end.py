"""One purse sale end to end: `tapstack terminal till` as its own process, reading
a gateway-certified purse through the real pcscd and the vsmartcard-vpcd driver, paid
offline, journalled, then uploaded to the gateway (served on loopback) and cleared to the
till's merchant."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from tests.gateway.test_clearing import Rider

TOKEN_KEY = "000102030405060708090a0b0c0d0e0f"


@pytest.mark.parametrize("reader_and_card", [pytest.param("pcscd+vpcd", marks=pytest.mark.pcscd)], indirect=True)
def test_a_purse_sale_through_pcscd_and_vpcd(reader_and_card, app, world, clock, store, tmp_path):
    clock.now = datetime.now(timezone.utc).replace(microsecond=0)  # the till signs with the real time
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        world.top_up("a", 5000)
        rider = Rider(world)
        rider.load(3000)
        merchant_id, _ = world.merchant("x")
        key_id, secret = world.terminal("x")[1].auth
        (tmp_path / "sales.txt").write_text("# one basket\nsale 12.50 basket-1\n")
        reader_and_card.present(rider.card)  # the customer's card waits on the reader
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
        run = subprocess.run(
            [sys.executable, "-m", "tapstack", "terminal", "till",
             "--reader", f"pcsc:{reader_and_card.reader.name}",
             "--gateway", f"http://127.0.0.1:{server.server_port}", "--terminal-key", f"{key_id}:{secret.hex()}",
             "--token-key", TOKEN_KEY, "--journal", str(tmp_path / "till.db"), "--sales", str(tmp_path / "sales.txt"),
             "--qr-out", str(tmp_path / "qr.png")],
            capture_output=True, text=True, timeout=120, env=env)
    finally:
        server.shutdown()
    assert run.returncode == 0, run.stdout + run.stderr
    approved = [line for line in run.stdout.splitlines() if line.startswith("APPROVED")]
    assert len(approved) == 1 and "Paid from the card 12.50 CNY   balance 17.50 CNY" in approved[0], run.stdout
    assert rider.balance == 1750
    tap_id = approved[0].rsplit("tap ", 1)[1]
    with store.read() as tx:
        row = tx.one("SELECT merchant_id, amount, clearing FROM till_sales WHERE record_id = :t", {"t": tap_id})
    assert row == {"merchant_id": merchant_id, "amount": 1250, "clearing": "posted"}
