"""/wallet/scan: scanning a code with the phone's camera, from a photo, or pasted.

The page (static/scan.js) shows the rear camera's live picture. Where the browser has
a BarcodeDetector it decodes the frames itself; elsewhere it sends a frame at a time to
POST /wallet/scan/frame, which decodes it here with zxing-cpp and answers JSON:
{"found": true, "text": ...} or {"found": false, "seen": bool, "message": ...} (seen: a
code is in the picture but could not be read yet, so the page says "hold steady").
"Choose a photo" does the same from a picture: the script sends it (made smaller) to
the same endpoint with ?photo=1, which tries harder; without a script the form posts
the file itself to POST /wallet/scan/photo. Whichever way the text is found, the phone
goes to /wallet/pay?code=<text>, the confirm screen (gateway.http.web.codes says what the
code asks).

Decoding: zxing-cpp on the grayscale picture; a photo also gets the retries that
rescue codes in real photos (a 1-pixel box blur for sensor noise, the global
histogram binariser for uneven light, the inverted picture for light-on-dark codes),
as wallet/qr.py does for the command line.
"""
from __future__ import annotations

import io
import urllib.parse
from dataclasses import dataclass

import zxingcpp
from flask import jsonify, redirect, request, url_for
from PIL import Image, ImageFilter, ImageOps, UnidentifiedImageError

from gateway.http.web import bp, check_csrf, page
from gateway.http.web.wallet import requires_wallet, signed_in_wallet

FRAME_BYTES = 4 * 1024 * 1024  # a camera frame or a photo the page made smaller
PHOTO_BYTES = 24 * 1024 * 1024  # a photo straight from a phone's camera
MAX_PIXELS = 50_000_000


@dataclass(frozen=True)
class Decoded:
    texts: tuple[str, ...]  # the distinct codes read
    seen: bool              # a code was found but could not be read
    problem: str | None = None  # the picture itself could not be read


def _text(barcode) -> str:
    # EMVCo payloads are UTF-8; zxing guesses a charset when the symbol has no ECI.
    try:
        return bytes(barcode.bytes).decode("utf-8")
    except UnicodeDecodeError:
        return barcode.text


def _read(gray: Image.Image, binarizer=zxingcpp.Binarizer.LocalAverage) -> list:
    return zxingcpp.read_barcodes(gray, formats=zxingcpp.BarcodeFormat.QRCode, binarizer=binarizer,
                                  try_invert=False, return_errors=True)


def decode(data: bytes, *, thorough: bool) -> Decoded:
    """The QR codes in a picture (JPEG, PNG, WebP ...): one pass for a camera frame (the next
    frame is the retry), the photo retries when thorough."""
    try:
        with Image.open(io.BytesIO(data)) as opened:
            if opened.width * opened.height > MAX_PIXELS:
                return Decoded((), False, "The picture is too large; choose a smaller one.")
            opened.load()
            gray = ImageOps.exif_transpose(opened).convert("L")
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return Decoded((), False, "That file is not a picture this wallet can read.")
    passes = [lambda: _read(gray)]
    if thorough:
        passes += [lambda: _read(gray.filter(ImageFilter.BoxBlur(1))),
                   lambda: _read(gray, zxingcpp.Binarizer.GlobalHistogram),
                   lambda: _read(ImageOps.invert(gray))]
    seen = False
    for attempt in passes:
        found = attempt()
        texts = tuple(dict.fromkeys(_text(b) for b in found if b.valid))
        if texts:
            return Decoded(texts, True)
        seen = seen or bool(found)
    return Decoded((), seen)


def message(decoded: Decoded, *, photo: bool) -> str | None:
    """What to tell the payer when a picture gave no single code; None when it did."""
    if decoded.problem:
        return decoded.problem
    if len(decoded.texts) > 1:
        return f"There are {len(decoded.texts)} QR codes in the picture. Show one code at a time."
    if decoded.texts:
        return None
    where = "this photo" if photo else "the picture"
    if decoded.seen:
        return (f"A QR code is in {where} but could not be read: it is blurred, damaged or cut off. "
                "Hold the phone steady, closer, in good light.")
    return (f"No QR code found in {where}. Fit the whole code in the frame, 15 to 30 cm away, in good light."
            if photo else "No QR code found yet.")


def confirm_url(text: str) -> str:
    return url_for("web.wallet_confirm_code") + "?" + urllib.parse.urlencode({"code": text})


@bp.get("/wallet/scan")
@requires_wallet
def wallet_scan(wallet):
    return page("wallet_scan.html", tab="pay", wallet=wallet)


@bp.post("/wallet/scan/frame")
def wallet_scan_frame():
    """Decode one camera frame (or, with ?photo=1, a photo the page made smaller); JSON."""
    request.max_content_length = FRAME_BYTES
    if signed_in_wallet() is None:
        return jsonify(found=False, message="Your session has ended; sign in again."), 401
    check_csrf()
    photo = request.args.get("photo") == "1"
    decoded = decode(request.get_data(), thorough=photo)
    said = message(decoded, photo=photo)
    if said is None:
        return jsonify(found=True, text=decoded.texts[0])
    return jsonify(found=False, seen=decoded.seen, message=said)


@bp.post("/wallet/scan/photo")
@requires_wallet
def wallet_scan_photo(wallet):
    """A photo posted by the form itself (no script): decode it, then the confirm screen."""
    request.max_content_length = PHOTO_BYTES
    check_csrf()
    upload = request.files.get("photo")
    if upload is None or not upload.filename:
        return page("wallet_scan.html", 400, tab="pay", wallet=wallet, error="Choose a photo of the QR code first.")
    decoded = decode(upload.read(), thorough=True)
    said = message(decoded, photo=True)
    if said is not None:
        return page("wallet_scan.html", 422, tab="pay", wallet=wallet, error=said)
    return redirect(confirm_url(decoded.texts[0]))
