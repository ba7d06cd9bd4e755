"""The wallet app's QR side: render payloads to PNG and SVG, scan them from images.

Rendering uses the `qrcode` package at error correction M with the standard quiet zone of
4 modules. Scanning uses zxing-cpp on the grayscale image as is, then, only when that
finds nothing readable, two cheap retries: a copy box-blurred by one pixel (sensor noise
in photos; measured to rescue codes the plain pass misses) and the global-histogram
binariser (uneven light). A median filter costs 180 ms a megapixel, so it is not tried. Every failure is a
`ScanError` with one line fit for a user; none is a traceback.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import qrcode
import qrcode.image.svg
import zxingcpp
from PIL import Image, ImageFilter, ImageOps, UnidentifiedImageError

from protocol import emvqr

QUIET_ZONE = 4  # modules of light margin, as ISO/IEC 18004 asks
ERROR_CORRECTION = qrcode.constants.ERROR_CORRECT_M


class ScanError(ValueError):
    """An image that yields no usable code; str() is the one-line reason."""


@dataclass(frozen=True)
class Scan:
    """What an image held: the decoded text and, for an EMVCo payload, its parsed value."""
    text: str
    emv: emvqr.MerchantQr | None


def symbol(text: str) -> qrcode.QRCode:
    """The smallest QR symbol holding text at error correction M (mask chosen by qrcode)."""
    code = qrcode.QRCode(error_correction=ERROR_CORRECTION, border=QUIET_ZONE)
    code.add_data(text)
    code.make(fit=True)
    return code


def modules(text: str) -> np.ndarray:
    """The symbol as a boolean array (True = dark), quiet zone included."""
    return np.array(symbol(text).get_matrix(), dtype=bool)


def render_png(text: str, *, box_size: int = 8) -> bytes:
    """A 1-bit PNG of text's QR code, box_size pixels a module."""
    dark = modules(text)
    image = Image.fromarray(np.where(dark, 0, 255).astype(np.uint8), "L")
    image = image.resize((dark.shape[1] * box_size, dark.shape[0] * box_size), Image.NEAREST)
    out = io.BytesIO()
    image.convert("1").save(out, format="PNG")
    return out.getvalue()


def render_svg(text: str) -> str:
    """An SVG of text's QR code: one path, sized in millimetres by qrcode (1 mm a module)."""
    image = symbol(text).make_image(image_factory=qrcode.image.svg.SvgPathImage)
    return image.to_string(encoding="unicode")


def write(text: str, path: str | Path, *, box_size: int = 8) -> Path:
    """Render text to path, PNG or SVG by its suffix."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".png":
        path.write_bytes(render_png(text, box_size=box_size))
    elif suffix == ".svg":
        path.write_text(render_svg(text), encoding="utf-8")
    else:
        raise ValueError(f"cannot write {path.name}: use a .png or .svg file name")
    return path


# -------------------------------------------------------------------------- scanning

def _load(image: str | Path | bytes) -> tuple[Image.Image, str]:
    name = "the image" if isinstance(image, (bytes, bytearray)) else str(image)
    source = io.BytesIO(image) if isinstance(image, (bytes, bytearray)) else image
    try:
        with Image.open(source) as opened:
            opened.load()
            picture = ImageOps.exif_transpose(opened)  # phone photos carry their rotation in EXIF
            return picture.convert("L"), name
    except FileNotFoundError:
        raise ScanError(f"no such file: {name}") from None
    except IsADirectoryError:
        raise ScanError(f"{name} is a directory, not an image") from None
    except UnidentifiedImageError:
        raise ScanError(f"file is not an image: {name}") from None
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise ScanError(f"cannot read image {name}: {err}") from None


def _read(gray: Image.Image, binarizer=zxingcpp.Binarizer.LocalAverage) -> list:
    return zxingcpp.read_barcodes(gray, formats=zxingcpp.BarcodeFormat.QRCode,
                                  binarizer=binarizer, return_errors=True)


def _text(barcode) -> str:
    # EMVCo payloads are UTF-8; zxing guesses a charset when the symbol has no ECI,
    # so decode the bytes ourselves and fall back to zxing's text for other encodings.
    try:
        return bytes(barcode.bytes).decode("utf-8")
    except UnicodeDecodeError:
        return barcode.text


def read_text(image: str | Path | bytes) -> str:
    """The text of the one QR code in image (a path or the file's bytes); raise ScanError."""
    gray, name = _load(image)
    attempts = (lambda: _read(gray),
                lambda: _read(gray.filter(ImageFilter.BoxBlur(1))),
                lambda: _read(gray, zxingcpp.Binarizer.GlobalHistogram))
    damaged = False
    for attempt in attempts:
        found = attempt()
        texts = {_text(b) for b in found if b.valid}
        if len(texts) > 1:
            raise ScanError(f"more than one QR code in {name} ({len(texts)}); show one at a time")
        if texts:
            return texts.pop()
        damaged = damaged or bool(found)
    if damaged:
        raise ScanError(f"a QR code was found in {name} but could not be read "
                        "(blurred, damaged or cut off)")
    raise ScanError(f"no QR code found in {name}")


def scan(image: str | Path | bytes, *, require_emv: bool = False) -> Scan:
    """Read image's QR code; parse it when it is an EMVCo merchant-presented payload.

    With require_emv, anything else is a ScanError saying why it is not one.
    """
    text = read_text(image)
    try:
        return Scan(text, emvqr.parse(text))
    except emvqr.QrFormatError as err:
        if require_emv:
            raise ScanError(f"QR code found but not an EMVCo payload: {err}") from None
        return Scan(text, None)
