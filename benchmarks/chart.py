"""A horizontal bar chart (time and size per setting) as PNG and SVG, with the standard library only.

The PNG is drawn on an RGB canvas with a built-in 5x7 bitmap font and written with :mod:`zlib`; the SVG
carries the same bars with real text. Left panel: median wall time with a min-max whisker; right
panel: median artifact size.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

RGB = tuple[int, int, int]

# 5x7 glyphs, one string of seven 5-bit rows per character (lower case is drawn as upper case).
FONT: dict[str, str] = {
    "A": "01110 10001 10001 11111 10001 10001 10001",
    "B": "11110 10001 10001 11110 10001 10001 11110",
    "C": "01110 10001 10000 10000 10000 10001 01110",
    "D": "11110 10001 10001 10001 10001 10001 11110",
    "E": "11111 10000 10000 11110 10000 10000 11111",
    "F": "11111 10000 10000 11110 10000 10000 10000",
    "G": "01110 10001 10000 10111 10001 10001 01111",
    "H": "10001 10001 10001 11111 10001 10001 10001",
    "I": "01110 00100 00100 00100 00100 00100 01110",
    "J": "00111 00010 00010 00010 00010 10010 01100",
    "K": "10001 10010 10100 11000 10100 10010 10001",
    "L": "10000 10000 10000 10000 10000 10000 11111",
    "M": "10001 11011 10101 10101 10001 10001 10001",
    "N": "10001 10001 11001 10101 10011 10001 10001",
    "O": "01110 10001 10001 10001 10001 10001 01110",
    "P": "11110 10001 10001 11110 10000 10000 10000",
    "Q": "01110 10001 10001 10001 10101 10010 01101",
    "R": "11110 10001 10001 11110 10100 10010 10001",
    "S": "01111 10000 10000 01110 00001 00001 11110",
    "T": "11111 00100 00100 00100 00100 00100 00100",
    "U": "10001 10001 10001 10001 10001 10001 01110",
    "V": "10001 10001 10001 10001 10001 01010 00100",
    "W": "10001 10001 10001 10101 10101 10101 01010",
    "X": "10001 10001 01010 00100 01010 10001 10001",
    "Y": "10001 10001 01010 00100 00100 00100 00100",
    "Z": "11111 00001 00010 00100 01000 10000 11111",
    "0": "01110 10001 10011 10101 11001 10001 01110",
    "1": "00100 01100 00100 00100 00100 00100 01110",
    "2": "01110 10001 00001 00010 00100 01000 11111",
    "3": "11111 00010 00100 00010 00001 10001 01110",
    "4": "00010 00110 01010 10010 11111 00010 00010",
    "5": "11111 10000 11110 00001 00001 10001 01110",
    "6": "00110 01000 10000 11110 10001 10001 01110",
    "7": "11111 00001 00010 00100 01000 01000 01000",
    "8": "01110 10001 10001 01110 10001 10001 01110",
    "9": "01110 10001 10001 01111 00001 00010 01100",
    " ": "00000 00000 00000 00000 00000 00000 00000",
    "-": "00000 00000 00000 11111 00000 00000 00000",
    "+": "00000 00100 00100 11111 00100 00100 00000",
    ":": "00000 01100 01100 00000 01100 01100 00000",
    ".": "00000 00000 00000 00000 00000 01100 01100",
    ",": "00000 00000 00000 00000 01100 00100 01000",
    "/": "00000 00001 00010 00100 01000 10000 00000",
    "(": "00010 00100 01000 01000 01000 00100 00010",
    ")": "01000 00100 00010 00010 00010 00100 01000",
    "=": "00000 00000 11111 00000 11111 00000 00000",
    "_": "00000 00000 00000 00000 00000 00000 11111",
    "<": "00010 00100 01000 10000 01000 00100 00010",
    ">": "01000 00100 00010 00001 00010 00100 01000",
    "%": "11000 11001 00010 00100 01000 10011 00011",
    "?": "01110 10001 00001 00010 00100 00000 00100",
}

WHITE: RGB = (255, 255, 255)
BLACK: RGB = (20, 20, 20)
GRID: RGB = (225, 225, 225)
BARE: RGB = (150, 150, 150)
PROVIDER: RGB = (66, 120, 200)
SIZE: RGB = (70, 160, 90)


@dataclass(frozen=True)
class Bar:
    """One setting: median wall time with its min/max, and median artifact size (MiB, 0 = unknown)."""

    label: str
    seconds: float
    seconds_low: float
    seconds_high: float
    size_mib: float


class Canvas:
    def __init__(self, width: int, height: int):
        self.width = width
        self.height = height
        self.pixels = bytearray(WHITE * (width * height))

    def rect(self, x0: int, y0: int, x1: int, y1: int, color: RGB) -> None:
        x0, x1 = max(0, min(x0, x1)), min(self.width, max(x0, x1))
        y0, y1 = max(0, min(y0, y1)), min(self.height, max(y0, y1))
        row = bytes(color) * (x1 - x0)
        for y in range(y0, y1):
            start = (y * self.width + x0) * 3
            self.pixels[start : start + len(row)] = row

    def text(self, x: int, y: int, text: str, color: RGB = BLACK, scale: int = 2) -> None:
        for char in text:
            glyph = FONT.get(char.upper(), FONT["?"])
            for row, bits in enumerate(glyph.split()):
                for col, bit in enumerate(bits):
                    if bit == "1":
                        self.rect(
                            x + col * scale,
                            y + row * scale,
                            x + (col + 1) * scale,
                            y + (row + 1) * scale,
                            color,
                        )
            x += 6 * scale

    def png(self) -> bytes:
        def chunk(kind: bytes, data: bytes) -> bytes:
            return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

        stride = self.width * 3
        raw = b"".join(
            b"\x00" + bytes(self.pixels[y * stride : (y + 1) * stride]) for y in range(self.height)
        )
        header = struct.pack(">IIBBBBB", self.width, self.height, 8, 2, 0, 0, 0)
        return (
            b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(raw, 9))
            + chunk(b"IEND", b"")
        )


def text_width(text: str, scale: int = 2) -> int:
    return len(text) * 6 * scale


def _ticks(maximum: float) -> list[float]:
    if maximum <= 0:
        return [0.0]
    for step in (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000):
        if maximum / step <= 5:
            break
    count = int(maximum / step) + 1
    return [i * step for i in range(count + 1)]


def _fmt(value: float) -> str:
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


@dataclass(frozen=True)
class Layout:
    label_width: int
    panel_width: int = 420
    gap: int = 60
    row_height: int = 30
    top: int = 80
    margin: int = 20

    def panel_x(self, index: int) -> int:
        return self.margin + self.label_width + index * (self.panel_width + self.gap)

    def width(self) -> int:
        return self.panel_x(2) - self.gap + self.margin

    def height(self, rows: int) -> int:
        return self.top + rows * self.row_height + 50


def write_chart(bars: Sequence[Bar], png_path: Path, svg_path: Path, title: str = "") -> None:
    """Draw ``bars`` into ``png_path`` and ``svg_path``."""
    title = title or "Time and size per setting (median, whisker = min-max)"
    layout = Layout(label_width=max([text_width(b.label) for b in bars] + [200]) + 16)
    canvas = Canvas(layout.width(), layout.height(len(bars)))
    svg: list[str] = []
    t_max = max([b.seconds_high for b in bars] + [0.001])
    s_max = max([b.size_mib for b in bars] + [0.001])
    t_ticks, s_ticks = _ticks(t_max), _ticks(s_max)
    panels = [("wall time s", t_ticks[-1], t_ticks), ("artifact MiB", s_ticks[-1], s_ticks)]
    canvas.text(layout.margin, 16, title, scale=2)
    svg.append(f'<text x="{layout.margin}" y="30" font-size="18">{escape(title)}</text>')
    bottom = layout.top + len(bars) * layout.row_height
    for index, (name, top_value, ticks) in enumerate(panels):
        x0 = layout.panel_x(index)
        canvas.text(x0, 48, name, scale=2)
        svg.append(f'<text x="{x0}" y="62" font-size="15">{escape(name)}</text>')
        for tick in ticks:
            x = x0 + round(tick / top_value * layout.panel_width)
            canvas.rect(x, layout.top - 4, x + 1, bottom, GRID)
            canvas.text(x - text_width(_fmt(tick), 1) // 2, bottom + 6, _fmt(tick), scale=1)
            svg.append(f'<line x1="{x}" y1="{layout.top - 4}" x2="{x}" y2="{bottom}" stroke="#e1e1e1"/>')
            svg.append(
                f'<text x="{x}" y="{bottom + 16}" font-size="11" text-anchor="middle">{_fmt(tick)}</text>'
            )
    for row, bar in enumerate(bars):
        y = layout.top + row * layout.row_height
        label_x = layout.margin + layout.label_width - 16 - text_width(bar.label)
        canvas.text(label_x, y + 8, bar.label, scale=2)
        svg.append(
            f'<text x="{layout.margin + layout.label_width - 16}" y="{y + 20}" font-size="14" '
            f'text-anchor="end" font-family="monospace">{escape(bar.label)}</text>'
        )
        color = BARE if "bare" in bar.label else PROVIDER
        x0 = layout.panel_x(0)

        def scaled(value: float, x0: int = x0, top: float = t_ticks[-1]) -> int:
            return x0 + round(value / top * layout.panel_width)

        canvas.rect(x0, y + 5, scaled(bar.seconds), y + layout.row_height - 5, color)
        canvas.rect(scaled(bar.seconds_low), y + 14, scaled(bar.seconds_high) + 1, y + 16, BLACK)
        canvas.text(scaled(bar.seconds_high) + 6, y + 11, _fmt(bar.seconds), scale=1)
        hexcolor = "#{:02x}{:02x}{:02x}".format(*color)
        svg.append(
            f'<rect x="{x0}" y="{y + 5}" width="{scaled(bar.seconds) - x0}" '
            f'height="{layout.row_height - 10}" fill="{hexcolor}"/>'
        )
        svg.append(
            f'<line x1="{scaled(bar.seconds_low)}" y1="{y + 15}" x2="{scaled(bar.seconds_high)}" '
            f'y2="{y + 15}" stroke="black" stroke-width="2"/>'
        )
        svg.append(
            f'<text x="{scaled(bar.seconds_high) + 6}" y="{y + 19}" font-size="11">{_fmt(bar.seconds)}</text>'
        )
        sx0 = layout.panel_x(1)
        if bar.size_mib > 0:
            sx1 = sx0 + round(bar.size_mib / s_ticks[-1] * layout.panel_width)
            canvas.rect(sx0, y + 5, sx1, y + layout.row_height - 5, SIZE)
            canvas.text(sx1 + 6, y + 11, _fmt(bar.size_mib), scale=1)
            svg.append(
                f'<rect x="{sx0}" y="{y + 5}" width="{sx1 - sx0}" height="{layout.row_height - 10}" '
                'fill="#46a05a"/>'
            )
            svg.append(f'<text x="{sx1 + 6}" y="{y + 19}" font-size="11">{_fmt(bar.size_mib)}</text>')
    png_path.write_bytes(canvas.png())
    svg_doc = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{canvas.width}" height="{canvas.height}" '
        f'font-family="sans-serif"><rect width="100%" height="100%" fill="white"/>'
        + "".join(svg)
        + "</svg>\n"
    )
    svg_path.write_text(svg_doc, encoding="utf-8")
