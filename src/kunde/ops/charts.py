"""Server-side SVG line charts: small, dependency-free, readable without JavaScript."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape

WIDTH, HEIGHT = 640, 220
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 28, 40
COLOURS = {"critical": "#b91c1c", "interactive": "#1d4ed8", "background": "#6b7280",
           "all": "#047857"}


@dataclass(frozen=True)
class Series:
    label: str
    values: list[float | None]
    colour: str
    dashed: bool = False


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    exp = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * exp:
            return float(step * exp)
    return float(10 * exp)


def _fmt(value: float) -> str:
    if value >= 1000:
        return f"{value / 1000:.3g}k"
    return f"{value:.3g}"


def line_chart(title: str, unit: str, starts: list[int], series: list[Series]) -> str:
    """An SVG document: one line per series over the bucket start times (Unix seconds)."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    values = [v for s in series for v in s.values if v is not None]
    top = _nice_max(max(values, default=0.0))
    n = max(len(starts), 2)

    def x(i: int) -> float:
        return LEFT + plot_w * i / (n - 1)

    def y(v: float) -> float:
        return TOP + plot_h * (1 - v / top)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{escape(title)}" '
        'font-family="system-ui, sans-serif" font-size="11">',
        f'<text x="{LEFT}" y="16" font-size="13" font-weight="600">{escape(title)}</text>',
    ]
    for k in range(5):
        v = top * k / 4
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(v):.1f}" y2="{y(v):.1f}" '
                     'stroke="#e5e7eb"/>')
        parts.append(f'<text x="{LEFT - 6}" y="{y(v) + 4:.1f}" text-anchor="end" '
                     f'fill="#374151">{_fmt(v)}</text>')
    parts.append(f'<text x="12" y="{TOP + plot_h / 2:.0f}" fill="#374151" '
                 f'transform="rotate(-90 12 {TOP + plot_h / 2:.0f})" text-anchor="middle">'
                 f'{escape(unit)}</text>')
    if starts:
        for i in sorted({0, len(starts) // 2, len(starts) - 1}):
            label = datetime.fromtimestamp(starts[i], UTC).strftime("%H:%M:%S")
            parts.append(f'<text x="{x(i):.1f}" y="{HEIGHT - BOTTOM + 14}" '
                         f'text-anchor="middle" fill="#374151">{label}</text>')
    for s in series:
        path: list[str] = []
        pen_up = True
        for i, point in enumerate(s.values):
            if point is None:
                pen_up = True
                continue
            path.append(f"{'M' if pen_up else 'L'}{x(i):.1f},{y(point):.1f}")
            pen_up = False
        if path:
            dash = ' stroke-dasharray="4 3"' if s.dashed else ""
            parts.append(f'<path d="{" ".join(path)}" fill="none" stroke="{s.colour}" '
                         f'stroke-width="1.6"{dash}/>')
    lx = LEFT
    for s in series:
        dash = ' stroke-dasharray="4 3"' if s.dashed else ""
        parts.append(f'<line x1="{lx}" x2="{lx + 16}" y1="{HEIGHT - 10}" y2="{HEIGHT - 10}" '
                     f'stroke="{s.colour}" stroke-width="2"{dash}/>')
        parts.append(f'<text x="{lx + 20}" y="{HEIGHT - 6}" fill="#111827">'
                     f'{escape(s.label)}</text>')
        lx += 28 + 6 * len(s.label)
    parts.append("</svg>")
    return "".join(parts)
