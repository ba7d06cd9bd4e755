"""The wallet app's QR side: render payloads to PNG and SVG, scan them from images.

Rendering uses the `qrcode` package at error correction M with the standard quiet zone of
4 modules. qrcode picks the mask by laying the symbol out eight times in pure Python
(about 30 ms for a bill); `symbol` lays it out once and scores the eight masks as numpy
array operations, giving the same symbol, bit for bit, in a fifth of the time.

Scanning uses zxing-cpp on the grayscale image as is, then, only when that finds nothing
readable, cheap retries: a copy box-blurred by one pixel (sensor noise in photos;
measured to rescue codes the plain pass misses), the global-histogram binariser (uneven
light) and the inverted image (light-on-dark codes). A median filter costs 180 ms a megapixel, so it is not tried. Every
failure is a `ScanError` with one line fit for a user; none is a traceback.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path

import click
import numpy as np
import qrcode
import qrcode.exceptions
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


class _Symbol(qrcode.QRCode):
    """qrcode's symbol, remembering which modules carry data: the ones a mask flips."""
    data_cells: np.ndarray | None = None

    def map_data(self, data, mask_pattern):
        if self.data_cells is None:
            self.data_cells = np.array([[m is None for m in row] for row in self.modules])
        super().map_data(data, mask_pattern)


@lru_cache(maxsize=None)
def _masks(size: int) -> np.ndarray:
    """The eight data masks of ISO/IEC 18004 (i row, j column), True where a module flips."""
    i, j = np.indices((size, size))
    return np.stack(((i + j) % 2 == 0, i % 2 == 0, j % 3 == 0, (i + j) % 3 == 0,
            (i // 2 + j // 3) % 2 == 0, (i * j) % 2 + (i * j) % 3 == 0,
            ((i * j) % 2 + (i * j) % 3) % 2 == 0, ((i * j) % 3 + (i + j) % 2) % 2 == 0))


# 1:1:3:1:1 finder-like runs with four light modules on one side, as 11-bit numbers.
_FINDER_LIKE = (0b10111010000, 0b00001011101)


def _runs(dark: np.ndarray) -> np.ndarray:
    """N1 of each symbol in a stack (k, n, n): 3 + (length - 5) for each run of 5 or more."""
    k, n, _ = dark.shape
    starts = np.ones(dark.shape, bool)
    starts[..., 1:] = dark[..., 1:] != dark[..., :-1]  # every row starts a run: none spans rows
    first = np.flatnonzero(starts)
    lengths = np.diff(np.append(first, dark.size))
    long = lengths >= 5
    return np.bincount(first[long] // (n * n), weights=lengths[long] - 2, minlength=k)


def _finder_like(dark: np.ndarray) -> np.ndarray:
    n = dark.shape[-1]
    value = np.zeros(dark.shape[:-1] + (n - 10,), np.int32)
    for bit in range(11):
        value = (value << 1) | dark[..., bit:n - 10 + bit]
    return 40 * ((value == _FINDER_LIKE[0]) | (value == _FINDER_LIKE[1])).sum(axis=(1, 2))


def penalty(dark: np.ndarray) -> np.ndarray:
    """Mask penalty scores N1 to N4 of a stack of symbols (k, n, n), each computed exactly
    as qrcode.util.lost_point does for one."""
    dark = dark.astype(np.int8)
    corner = dark[:, :-1, :-1]
    blocks = (corner == dark[:, :-1, 1:]) & (corner == dark[:, 1:, :-1]) & (corner == dark[:, 1:, 1:])
    size = dark.shape[1] * dark.shape[2]
    percent = dark.sum(axis=(1, 2)) / size * 100
    balance = (np.abs(percent - 50) / 5).astype(int) * 10
    upright = dark.transpose(0, 2, 1)
    return (_runs(dark) + _runs(upright) + 3 * blocks.sum(axis=(1, 2))
            + _finder_like(dark) + _finder_like(upright) + balance).astype(int)


def symbol(text: str) -> qrcode.QRCode:
    """The smallest QR symbol holding text at error correction M, with the mask pattern of
    lowest penalty: the one qrcode itself picks, found about 5 times faster by scoring the
    eight masks as array operations over one laid-out symbol instead of laying out eight."""
    code = _Symbol(error_correction=ERROR_CORRECTION, border=QUIET_ZONE)
    code.add_data(text)
    try:
        code.best_fit()
    except (ValueError, qrcode.exceptions.DataOverflowError):  # qrcode says "version 41"
        raise ValueError(f"a payload of {len(text)} characters is too long for a QR code "
                         "at error correction M") from None
    code.makeImpl(True, 0)  # format bits left light, as qrcode scores masks
    base = np.array(code.modules, dtype=bool)
    masks = _masks(len(base))
    flips = code.data_cells & (masks[0] ^ masks)
    best = code.mask_pattern = int(np.argmin(penalty(base ^ flips)))  # first lowest, as qrcode
    # Lay out the winner by the same flip, then let qrcode write the real format and
    # version bits (15 and 18 modules) where makeImpl(True, ...) left them light.
    code.modules = (base ^ flips[best]).tolist()
    code.setup_type_info(False, best)
    if code.version >= 7:
        code.setup_type_number(False)
    return code


def modules(text: str) -> np.ndarray:
    """The symbol as a boolean array (True = dark), quiet zone included."""
    return np.array(symbol(text).get_matrix(), dtype=bool)


def render_png(text: str, *, box_size: int = 8) -> bytes:
    """A 1-bit PNG of text's QR code, box_size pixels a module."""
    light = ~modules(text)
    image = Image.fromarray(np.repeat(np.repeat(light, box_size, axis=0), box_size, axis=1))
    out = io.BytesIO()
    image.save(out, format="PNG")  # a bool array is a mode "1" image: 1 bit a pixel
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
    # zxing's own inverted pass doubles the time of every scan; light-on-dark codes are
    # rare, so they get a pass of their own, last.
    return zxingcpp.read_barcodes(gray, formats=zxingcpp.BarcodeFormat.QRCode, binarizer=binarizer,
                                  try_invert=False, return_errors=True)


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
                lambda: _read(gray, zxingcpp.Binarizer.GlobalHistogram),
                lambda: _read(ImageOps.invert(gray)))
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


# ---------------------------------------------------------------------- command line

def _describe(scanned: Scan, now: datetime) -> list[str]:
    qr_value = scanned.emv
    if qr_value is None:
        lines = [f"text       {scanned.text}"]
        if scanned.text.startswith("00"):  # meant as EMVCo, perhaps: say what is wrong
            try:
                emvqr.parse(scanned.text)
            except emvqr.QrFormatError as err:
                lines.append(f"not EMVCo  {err}")
        return lines
    kind = {True: "dynamic", False: "static", None: "no point of initiation"}[qr_value.dynamic]
    scheme = emvqr.scheme(qr_value)
    lines = [f"EMVCo merchant-presented code ({kind})" + (f", {scheme}" if scheme else ""),
             f"merchant   {qr_value.name or '(no name)'}, {qr_value.city or '(no city)'} "
             f"({qr_value.country or 'no country'}), MCC {qr_value.mcc or '(none)'}"]
    if qr_value.local_name:
        local_city = f", {qr_value.local_city}" if qr_value.local_city else ""
        lines.append(f"local name {qr_value.local_name}{local_city} ({qr_value.language.get('00', '?')})")
    if qr_value.amount is not None:
        lines.append(f"amount     {emvqr.amount_text(qr_value.amount, qr_value.currency)} {qr_value.currency_code}")
    for label, value in (("bill", qr_value.bill_number), ("reference", qr_value.reference_label),
                         ("terminal", qr_value.terminal_label)):
        if value:
            lines.append(f"{label:10s} {value}")
    lines += [f"warning    {warning}" for warning in qr_value.warnings]
    try:
        code = emvqr.read_tapstack(qr_value, now)
    except emvqr.QrFormatError as err:
        lines.append(f"tapstack   not payable here: {err}")
    else:
        expiry = f", expires {code.expires_at:%Y-%m-%d %H:%M:%S} UTC" if code.expires_at else ""
        lines.append(f"tapstack   {code.kind} {code.merchant_id}{expiry}")
    return lines


@click.command("decode")
@click.argument("image", type=click.Path(path_type=Path))
@click.option("--text", "text_only", is_flag=True, help="Print only the decoded text.")
def decode_command(image: Path, text_only: bool) -> None:
    """Decode the QR code in IMAGE (PNG or JPEG, a photo or a screenshot) and print what it
    holds: its text and, for an EMVCo payload, its fields and every rule the code bends
    (read liberally, each a warning line). Pays nothing; `scan` pays."""
    try:
        scanned = scan(image)
    except ScanError as err:
        raise click.ClickException(str(err)) from None
    lines = [scanned.text] if text_only else _describe(scanned, datetime.now(timezone.utc))
    click.echo("\n".join(lines))


@click.command("render")
@click.argument("payload")
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--box-size", default=8, show_default=True, type=click.IntRange(1, 100),
              help="Pixels a module (PNG only).")
def render_command(payload: str, out: Path, box_size: int) -> None:
    """Render PAYLOAD as a QR code into OUT (.png or .svg)."""
    try:
        write(payload, out, box_size=box_size)
    except (ValueError, OSError) as err:
        raise click.ClickException(str(err)) from None
    click.echo(f"wrote {out}")
