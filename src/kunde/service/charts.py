"""Server-side SVG charts for the service reports: pure functions from numbers to markup."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

W, H, PAD_L, PAD_B, PAD_T = 560, 220, 44, 38, 24


def bar_chart(title: str, items: Sequence[tuple[str, float]], unit: str = "") -> str:
    """Vertical bars with their value on top; an empty series says so instead of a blank."""
    parts = [_open(title)]
    if not items:
        parts.append(_empty())
        return "".join(parts) + "</svg>"
    top = max(v for _, v in items) or 1.0
    plot_w, plot_h = W - PAD_L - 10, H - PAD_B - PAD_T
    step = plot_w / len(items)
    bar = max(step * 0.6, 2.0)
    for i, (label, value) in enumerate(items):
        h = plot_h * (value / top)
        x = PAD_L + i * step + (step - bar) / 2
        y = PAD_T + plot_h - h
        parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                     f'fill="#0b6bcb"><title>{escape(label)}: {_fmt(value)}{unit}</title></rect>')
        parts.append(f'<text x="{x + bar / 2:.1f}" y="{y - 4:.1f}" text-anchor="middle" '
                     f'font-size="11">{_fmt(value)}{escape(unit)}</text>')
        parts.append(f'<text x="{x + bar / 2:.1f}" y="{H - PAD_B + 14}" text-anchor="middle" '
                     f'font-size="11">{escape(label[:14])}</text>')
    parts.append(_axis())
    return "".join(parts) + "</svg>"


def line_chart(title: str, points: Sequence[tuple[str, float | None]], lo: float, hi: float,
               unit: str = "") -> str:
    """A line over labelled periods on a fixed scale; periods without data leave a gap."""
    parts = [_open(title)]
    if not any(v is not None for _, v in points):
        parts.append(_empty())
        return "".join(parts) + "</svg>"
    plot_w, plot_h = W - PAD_L - 10, H - PAD_B - PAD_T
    step = plot_w / max(len(points) - 1, 1)
    span = (hi - lo) or 1.0

    def y_of(v: float) -> float:
        return PAD_T + plot_h - plot_h * (v - lo) / span

    for v in (lo, (lo + hi) / 2, hi):
        parts.append(f'<text x="{PAD_L - 6}" y="{y_of(v) + 4:.1f}" text-anchor="end" '
                     f'font-size="10">{_fmt(v)}</text>')
    segment: list[str] = []
    for i, (label, value) in enumerate(points):
        x = PAD_L + i * step
        parts.append(f'<text x="{x:.1f}" y="{H - PAD_B + 14}" text-anchor="middle" '
                     f'font-size="10">{escape(label)}</text>')
        if value is None:
            parts.append(_poly(segment))
            segment = []
            continue
        segment.append(f"{x:.1f},{y_of(value):.1f}")
        parts.append(f'<circle cx="{x:.1f}" cy="{y_of(value):.1f}" r="3" fill="#0b6bcb">'
                     f"<title>{escape(label)}: {_fmt(value)}{escape(unit)}</title></circle>")
    parts.append(_poly(segment))
    parts.append(_axis())
    return "".join(parts) + "</svg>"


def _open(title: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" role="img" '
            f'aria-label="{escape(title)}" class="chart"><title>{escape(title)}</title>'
            f'<text x="{PAD_L}" y="15" font-size="13" font-weight="600">{escape(title)}</text>')


def _empty() -> str:
    return f'<text x="{W / 2}" y="{H / 2}" text-anchor="middle" fill="#667085">no data yet</text>'


def _axis() -> str:
    y = H - PAD_B
    return f'<line x1="{PAD_L}" y1="{y}" x2="{W - 10}" y2="{y}" stroke="#98a2b3"/>'


def _poly(segment: list[str]) -> str:
    if len(segment) < 2:
        return ""
    return f'<polyline points="{" ".join(segment)}" fill="none" stroke="#0b6bcb" stroke-width="2"/>'


def _fmt(v: float) -> str:
    return f"{v:.0f}" if abs(v - round(v)) < 0.05 else f"{v:.1f}"
