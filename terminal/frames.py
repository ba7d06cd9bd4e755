"""Camera frames: image files a camera rewrites (--qr-frame) or drops into a directory
(--qr-dir), each new one scanned for a QR code (a bus ticket, a till's pay code).

`Watch` tells which files changed since the last look (by modification time); the stop
feed (terminal/stops.py) is followed with one too.
"""
from __future__ import annotations

from pathlib import Path

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".pgm", ".bmp")


class Watch:
    """Files changed since the last look, by modification time."""

    def __init__(self):
        self._seen: dict[Path, int] = {}

    def changed(self, path: Path) -> bool:
        try:
            mtime = path.stat().st_mtime_ns
        except OSError:
            return False
        if self._seen.get(path) == mtime:
            return False
        self._seen[path] = mtime
        return True

    def forget(self, path: Path) -> None:
        """The next look at path sees it changed."""
        self._seen.pop(path, None)


class Frames:
    """The camera frames new since the last look."""

    def __init__(self, frame: Path | None, directory: Path | None):
        self.frame, self.directory, self.watch = frame, directory, Watch()

    def new(self) -> list[Path]:
        frames = []
        if self.frame is not None and self.watch.changed(self.frame):
            frames.append(self.frame)
        if self.directory is not None and self.directory.is_dir():
            for path in sorted(self.directory.iterdir()):
                if path.suffix.lower() in IMAGE_SUFFIXES and self.watch.changed(path):
                    frames.append(path)
        return frames


def read_qr_text(path: Path) -> str | None:
    """The text of the first QR code in an image file, None when there is none."""
    import zxingcpp
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            found = zxingcpp.read_barcodes(image.convert("L"), formats=zxingcpp.BarcodeFormat.QRCode)
    except (OSError, UnidentifiedImageError):
        return None
    return found[0].text if found else None
