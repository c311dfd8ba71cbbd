"""Server-side SVG charts (no JavaScript, no CDN): bar charts and histograms."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

PALETTE = ("#2b6cb0", "#c05621", "#2f855a", "#6b46c1", "#b7791f", "#c53030", "#319795")


def bars(title: str, labels: Sequence[str], series: dict[str, Sequence[float]], *,
         width: int = 720, height: int = 300, fmt: str = "{:.3f}") -> str:
    """Grouped vertical bars: one group per label, one bar per series."""
    top, bottom, left, right = 36, 60, 48, 12
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max((v for vals in series.values() for v in vals), default=0.0) or 1.0
    n_groups, n_series = max(len(labels), 1), max(len(series), 1)
    group_w = plot_w / n_groups
    bar_w = max(group_w * 0.8 / n_series, 2)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
             f'role="img" aria-label="{escape(title)}" class="chart">',
             f'<text x="{left}" y="20" font-size="14" font-weight="bold">{escape(title)}</text>',
             f'<line x1="{left}" y1="{top + plot_h}" x2="{width - right}" y2="{top + plot_h}" '
             'stroke="#555"/>']
    for g, label in enumerate(labels):
        x0 = left + g * group_w + group_w * 0.1
        for s, (name, vals) in enumerate(series.items()):
            v = float(vals[g]) if g < len(vals) else 0.0
            h = plot_h * v / peak
            x = x0 + s * bar_w
            parts.append(f'<rect x="{x:.1f}" y="{top + plot_h - h:.1f}" width="{bar_w - 1:.1f}" '
                         f'height="{h:.1f}" fill="{PALETTE[s % len(PALETTE)]}">'
                         f'<title>{escape(label)} {escape(name)}: {fmt.format(v)}</title></rect>')
        parts.append(f'<text x="{x0 + group_w * 0.4:.1f}" y="{top + plot_h + 16}" font-size="11" '
                     f'text-anchor="middle">{escape(label)}</text>')
    for s, name in enumerate(series):
        y = height - 14
        x = left + s * 130
        parts.append(f'<rect x="{x}" y="{y - 9}" width="10" height="10" '
                     f'fill="{PALETTE[s % len(PALETTE)]}"/><text x="{x + 14}" y="{y}" '
                     f'font-size="11">{escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def histogram(title: str, values: Sequence[float], *, bins: int = 20, width: int = 720,
              height: int = 260, unit: str = "") -> str:
    """A histogram of ``values`` (e.g. CLV per customer)."""
    if not values:
        return bars(title, [], {})
    lo, hi = min(values), max(values)
    step = (hi - lo) / bins or 1.0
    counts = [0] * bins
    for v in values:
        counts[min(int((v - lo) / step), bins - 1)] += 1
    labels = [f"{lo + i * step:.0f}" if i % 4 == 0 else "" for i in range(bins)]
    return bars(title, labels, {f"customers per {unit} band" if unit else "customers":
                                [float(c) for c in counts]}, width=width, height=height,
                fmt="{:.0f}")
