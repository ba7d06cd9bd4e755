"""QR benchmark: build + render a bill code to PNG, and scan one from a photo-like image.

Each measurement prints the median (p50) and p99 in milliseconds over --runs runs, next
to a baseline measured in the same run, and the ratio:

- render: emvqr.bill_code + wallet.qr.render_png, against the qrcode package's own path
  (QRCode.make with its mask search, make_image, PNG) for the same payload;
- scan: wallet.qr.read_text of a 1000x1000 PNG in which the bill code (3 px a module) sits
  on a grainy background, rotated by 10 degrees, with Gaussian noise (fixed seed), against
  the same code pasted upright on a clean white 1000x1000 image;
- parse and verify: emvqr.parse of the bill payload, signed_qr.verify of a pay code.

    python bench/qr_bench.py [--runs 300]
"""
from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import qrcode
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from protocol import certs, ed25519, emvqr, signed_qr  # noqa: E402
from wallet import qr  # noqa: E402

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)
SEED = 20261127


def bill_payload(n: int = 0) -> str:
    return emvqr.bill_code(biller_id="WATER-0042", bill_number=f"20261100{n:05d}",
                           reference="ACCT88213", amount=12850 + n, currency="CNY",
                           merchant_name="Harbin Water", merchant_city="Harbin",
                           expires_at=NOW + timedelta(days=30))


def png_bytes(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def photo(payload: str, *, rotated: bool) -> bytes:
    """The bill on a 1000x1000 image: photo-like (rotated, grainy, noisy) or clean."""
    code = Image.open(io.BytesIO(qr.render_png(payload, box_size=3))).convert("L")
    if not rotated:
        canvas = Image.new("L", (1000, 1000), 255)
        canvas.paste(code, (300, 280))
        return png_bytes(canvas)
    rng = np.random.default_rng(SEED)
    canvas = Image.fromarray(rng.normal(170, 25, (1000, 1000)).clip(0, 255).astype(np.uint8))
    canvas.paste(code.rotate(10, expand=True, fillcolor=255, resample=Image.BILINEAR), (260, 240))
    pixels = np.asarray(canvas, dtype=float) + rng.normal(0, 30, (1000, 1000))
    return png_bytes(Image.fromarray(pixels.clip(0, 255).astype(np.uint8)))


def qrcode_default_png(payload: str) -> bytes:
    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=4, box_size=8)
    code.add_data(payload)
    code.make(fit=True)
    out = io.BytesIO()
    code.make_image().save(out)
    return out.getvalue()


def timed(operation, runs: int, warmup: int = 5) -> list[float]:
    for i in range(warmup):
        operation(i)
    samples = []
    for i in range(runs):
        start = time.perf_counter()
        operation(i)
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def p(samples: list[float], q: float) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[int(q) - 1] if q < 100 else max(samples)


def report(name: str, samples: list[float], baseline_name: str, baseline: list[float], bar: float | None):
    mine, base = statistics.median(samples), statistics.median(baseline)
    verdict = "" if bar is None else ("  (bar p50 <= %g ms: %s)" % (bar, "met" if mine <= bar else "MISSED"))
    print(f"{name:34s} p50 {mine:7.2f} ms  p99 {p(samples, 99):7.2f} ms{verdict}")
    print(f"  baseline {baseline_name:25s} p50 {base:7.2f} ms  p99 {p(baseline, 99):7.2f} ms"
          f"  ratio {mine / base:5.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300)
    runs = parser.parse_args().runs
    if runs < 200:
        parser.error("use at least 200 runs so that p99 means something")

    payloads = [bill_payload(n) for n in range(64)]  # vary the content: masks differ
    print(f"bill payload: {len(payloads[0])} characters, QR version {qr.symbol(payloads[0]).version}, "
          f"{runs} runs each, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f} (wall-clock times: other load inflates them)")
    render = timed(lambda i: qr.render_png(bill_payload(i % 64)), runs)
    default = timed(lambda i: qrcode_default_png(payloads[i % 64]), runs)
    report("build + render PNG (wallet.qr)", render, "qrcode default path", default, 10)

    noisy, clean = photo(payloads[0], rotated=True), photo(payloads[0], rotated=False)
    assert qr.read_text(noisy) == payloads[0] and qr.read_text(clean) == payloads[0]
    scan_noisy = timed(lambda i: qr.read_text(noisy), runs)
    scan_clean = timed(lambda i: qr.read_text(clean), runs)
    report("scan 1000x1000 photo-like PNG", scan_noisy, "clean upright 1000x1000", scan_clean, 30)

    parse = timed(lambda i: emvqr.parse(payloads[i % 64]), runs)
    crc = timed(lambda i: emvqr.crc16(payloads[i % 64].encode()), runs)
    report("emvqr.parse (bill)", parse, "its CRC alone", crc, None)

    issuer, wallet = bytes(range(32)), bytes(range(1, 33))
    cert = certs.issue(issuer, bytes(8), ed25519.public_key(wallet), int(NOW.timestamp()) + 86400)
    keys = {certs.key_id(ed25519.public_key(issuer)): ed25519.public_key(issuer)}
    code = signed_qr.pay_code(wallet, cert, issued_at=NOW, nonce=bytes(8), limit=5000, currency="CNY")
    verify = timed(lambda i: signed_qr.verify(code, keys, NOW), runs)
    # a valid signature: a forged one (all zero) can be refused before any curve arithmetic
    signature = ed25519.sign(wallet, b"x" * 150)
    one_sig = timed(lambda i: ed25519.verify(cert.card_public_key, b"x" * 150, signature), runs)
    report("signed_qr.verify (pay code)", verify, "one Ed25519 verify", one_sig, None)


if __name__ == "__main__":
    main()
