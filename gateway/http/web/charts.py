"""Bar charts as inline SVG, drawn on the server: no script, readable without colour.

Each chart is an `<svg role="img">` with a <title> and <desc> for screen readers, every
bar carries its number as text beside it, and each bar has its own <title> (a hover
tooltip in browsers). Pure: values in, markup out.
"""
from __future__ import annotations

from html import escape

from markupsafe import Markup


def _scale(value: int, largest: int, length: float) -> float:
    return 0.0 if largest <= 0 else length * value / largest


def columns(items: list[tuple[str, int, str]], *, title: str, desc: str, height: int = 180,
            column: int = 28) -> Markup:
    """Vertical bars, one per (label, value, value as text), left to right (hours of a day)."""
    top, bottom, gap = 18, 22, 4
    plot = height - top - bottom
    width = max(1, len(items)) * column
    largest = max((v for _, v, _ in items), default=0)
    parts = _opening(title, desc, width, height)
    for i, (label, value, text) in enumerate(items):
        h = _scale(value, largest, plot)
        x = i * column + gap / 2
        y = top + plot - h
        parts.append(f'<g class="bar"><title>{escape(label)}: {escape(text)}</title>'
                     f'<rect x="{x:.1f}" y="{y:.1f}" width="{column - gap}" height="{h:.1f}"></rect>'
                     f'<text class="value" x="{x + (column - gap) / 2:.1f}" y="{y - 4:.1f}" '
                     f'text-anchor="middle">{escape(text) if value else ""}</text>'
                     f'<text class="label" x="{x + (column - gap) / 2:.1f}" y="{height - 6}" '
                     f'text-anchor="middle">{escape(label)}</text></g>')
    parts.append(f'<line class="axis" x1="0" y1="{top + plot}" x2="{width}" y2="{top + plot}"></line></svg>')
    return Markup("".join(parts))


def bars(items: list[tuple[str, int, str]], *, title: str, desc: str, width: int = 480,
         row: int = 26, label_width: int = 110) -> Markup:
    """Horizontal bars, one per (label, value, value as text), top to bottom (routes)."""
    text_room = 110
    length = width - label_width - text_room
    height = max(1, len(items)) * row
    largest = max((v for _, v, _ in items), default=0)
    parts = _opening(title, desc, width, height)
    for i, (label, value, text) in enumerate(items):
        w = _scale(value, largest, length)
        y = i * row
        parts.append(f'<g class="bar"><title>{escape(label)}: {escape(text)}</title>'
                     f'<text class="label" x="{label_width - 8}" y="{y + row * 0.65:.1f}" '
                     f'text-anchor="end">{escape(label)}</text>'
                     f'<rect x="{label_width}" y="{y + 4}" width="{w:.1f}" height="{row - 8}"></rect>'
                     f'<text class="value" x="{label_width + w + 6:.1f}" y="{y + row * 0.65:.1f}">'
                     f'{escape(text)}</text></g>')
    parts.append("</svg>")
    return Markup("".join(parts))


def _opening(title: str, desc: str, width: float, height: float) -> list[str]:
    """The <svg> element's start, named by its <title> and described by its <desc>."""
    t, d = f"{_id(title)}-t", f"{_id(title)}-d"
    return [f'<svg class="chart" role="img" aria-labelledby="{t} {d}" '
            f'viewBox="0 0 {width} {height}" width="{width}" height="{height}">',
            f'<title id="{t}">{escape(title)}</title><desc id="{d}">{escape(desc)}</desc>']


def _id(title: str) -> str:
    return "c-" + "".join(c if c.isalnum() else "-" for c in title.lower())[:40]
