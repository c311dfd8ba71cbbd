"""Server-side SVG charts for the loyalty console: pure functions returning markup.

Every piece of text placed in the SVG (titles, labels) goes through `html.escape`
first; numbers are formatted here. That is why building `Markup` from the strings
below is safe (the S704 exceptions).
"""

from __future__ import annotations

from html import escape

from markupsafe import Markup

W, H, PAD = 520, 200, 28


def bars(title: str, data: list[tuple[str, float]], *, unit: str = "") -> Markup:
    """A labelled bar chart; an empty series renders a 'no data yet' panel."""
    t = escape(title)
    if not data or max(v for _, v in data) <= 0:
        return Markup(  # noqa: S704 - text escaped above
            f'<svg class="chart" role="img" aria-label="{t}" viewBox="0 0 {W} 60" '
            f'xmlns="http://www.w3.org/2000/svg"><title>{t}</title>'
            f'<text x="8" y="34" font-size="13" fill="#666">{t}: no data yet</text></svg>')
    top = max(v for _, v in data)
    slot = (W - 2 * PAD) / len(data)
    width = max(4.0, slot * 0.7)
    parts = [f'<svg class="chart" role="img" aria-label="{t}" viewBox="0 0 {W} {H + 40}" '
             f'xmlns="http://www.w3.org/2000/svg"><title>{t}</title>',
             f'<line x1="{PAD}" y1="{H}" x2="{W - PAD}" y2="{H}" stroke="#999"/>']
    for i, (label, value) in enumerate(data):
        h = (H - PAD) * value / top
        x = PAD + i * slot + (slot - width) / 2
        lab, val = escape(label), f"{value:,.0f}{escape(unit)}"
        parts.append(f'<rect x="{x:.1f}" y="{H - h:.1f}" width="{width:.1f}" height="{h:.1f}" '
                     f'fill="#3b6ea5"><title>{lab}: {val}</title></rect>')
        parts.append(f'<text x="{x + width / 2:.1f}" y="{H - h - 4:.1f}" font-size="11" '
                     f'text-anchor="middle">{val}</text>')
        parts.append(f'<text x="{x + width / 2:.1f}" y="{H + 16}" font-size="11" '
                     f'text-anchor="middle">{lab[:14]}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - text escaped above


def gauge(title: str, share: float) -> Markup:
    """A horizontal 0-100 % bar (redemption rate, tier progress)."""
    t = escape(title)
    share = max(0.0, min(1.0, share))
    return Markup(  # noqa: S704 - text escaped above
        f'<svg class="chart" role="img" aria-label="{t}" viewBox="0 0 {W} 50" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{t}</title>'
        f'<rect x="0" y="10" width="{W}" height="20" fill="#e6e6e6"/>'
        f'<rect x="0" y="10" width="{W * share:.1f}" height="20" fill="#3b8a5a"/>'
        f'<text x="{W / 2}" y="45" font-size="12" text-anchor="middle">{t}: '
        f'{share * 100:.1f} %</text></svg>')
