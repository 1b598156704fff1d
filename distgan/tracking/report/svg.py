"""Line charts as inline SVG: small, self-contained, readable in any browser and by a test through the DOM.

A plotting library would embed its fonts and styles in every chart; a report holds
dozens of charts and must stay a few MB for a 100k-step run, so each chart is one
``<svg>`` with a ``<polyline>`` per series (``data-series`` names it), axis ticks
at round numbers and a legend. Series longer than ``MAX_POINTS`` are thinned to
the min and max of each bucket, so spikes survive the downsampling.
"""

from __future__ import annotations

import html
import math
from typing import Optional, Sequence

MAX_POINTS = 600
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f",
          "#bcbd22")
WIDTH, HEIGHT = 460, 250
LEFT, RIGHT, TOP, BOTTOM = 58, 24, 26, 40

Series = Sequence[tuple[float, float]]


def thin(points: Series, limit: int = MAX_POINTS) -> list[tuple[float, float]]:
    """At most ``limit`` points: each of ``limit // 2`` buckets keeps its lowest and highest point, in order."""
    points = [(x, y) for x, y in points if math.isfinite(x) and math.isfinite(y)]
    if len(points) <= limit:
        return points
    buckets = max(1, limit // 2)
    size = len(points) / buckets
    kept = []
    for b in range(buckets):
        chunk = points[int(b * size):int((b + 1) * size)]
        if chunk:
            low, high = min(chunk, key=lambda p: p[1]), max(chunk, key=lambda p: p[1])
            kept.extend(sorted({low, high}, key=lambda p: p[0]))
    return kept


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values from at or below ``low`` to at or above ``high``, 1, 2 or 5 times a power of ten apart."""
    if high <= low:
        high = low + (abs(low) or 1.0)
    raw = (high - low) / count
    step = 10 ** math.floor(math.log10(raw))
    step *= next(m for m in (1, 2, 5, 10) if raw <= m * step)
    ticks = [math.floor(low / step) * step]
    while ticks[-1] < high - step * 1e-9:
        ticks.append(ticks[-1] + step)
    return [round(t, 12) for t in ticks]


def _label(value: float) -> str:
    if value == int(value) and abs(value) < 1e7:  # steps, seconds, images/s: whole numbers in full
        return str(int(value))
    return f"{value:.3g}"


def line_chart(title: str, series: dict[str, Series], x_label: str, y_label: str = "",
               hline: Optional[tuple[str, float]] = None) -> str:
    """One chart; ``hline`` is a labelled horizontal reference (bicubic PSNR). Empty series are left out."""
    series = {name: thin(points) for name, points in series.items()}
    series = {name: points for name, points in series.items() if points}
    if not series:
        return ""
    xs = [x for pts in series.values() for x, _ in pts]
    ys = [y for pts in series.values() for _, y in pts] + ([hline[1]] if hline else [])
    x_ticks, y_ticks = nice_ticks(min(xs), max(xs)), nice_ticks(min(ys), max(ys))
    x0, x1, y0, y1 = min(x_ticks), max(x_ticks), min(y_ticks), max(y_ticks)
    x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + 1)

    def px(x: float) -> float:
        return LEFT + (x - x0) / (x1 - x0) * (WIDTH - LEFT - RIGHT)

    def py(y: float) -> float:
        return HEIGHT - BOTTOM - (y - y0) / (y1 - y0) * (HEIGHT - TOP - BOTTOM)

    out = [f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
           f'width="{WIDTH}" height="{HEIGHT}" data-title="{html.escape(title)}">',
           f'<text x="{LEFT}" y="16" class="title">{html.escape(title)}</text>']
    for t in x_ticks:
        out.append(f'<line x1="{px(t):.1f}" x2="{px(t):.1f}" y1="{TOP}" y2="{HEIGHT - BOTTOM}" class="grid"/>'
                   f'<text x="{px(t):.1f}" y="{HEIGHT - BOTTOM + 14}" class="tick" text-anchor="middle">'
                   f'{_label(t)}</text>')
    for t in y_ticks:
        out.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{py(t):.1f}" y2="{py(t):.1f}" class="grid"/>'
                   f'<text x="{LEFT - 4}" y="{py(t) + 4:.1f}" class="tick" text-anchor="end">{_label(t)}</text>')
    out.append(f'<text x="{(LEFT + WIDTH - RIGHT) / 2:.0f}" y="{HEIGHT - 6}" class="axis" text-anchor="middle">'
               f'{html.escape(x_label)}</text>')
    if y_label:
        out.append(f'<text x="12" y="{(TOP + HEIGHT - BOTTOM) / 2:.0f}" class="axis" text-anchor="middle" '
                   f'transform="rotate(-90 12 {(TOP + HEIGHT - BOTTOM) / 2:.0f})">{html.escape(y_label)}</text>')
    if hline:
        out.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{py(hline[1]):.1f}" y2="{py(hline[1]):.1f}" '
                   f'class="ref" data-series="{html.escape(hline[0])}"/>'
                   f'<text x="{WIDTH - RIGHT - 2}" y="{py(hline[1]) - 3:.1f}" class="tick" text-anchor="end">'
                   f'{html.escape(hline[0])}</text>')
    for i, (name, points) in enumerate(series.items()):
        color = COLORS[i % len(COLORS)]
        coords = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in points)
        out.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.5" data-series="{html.escape(name)}" '
                   f'data-points="{len(points)}" points="{coords}"/>')
        out.append(f'<text x="{LEFT + 6 + 96 * (i % 4)}" y="{TOP + 12 + 12 * (i // 4)}" class="legend" '
                   f'fill="{color}">{html.escape(name)}</text>')
    out.append("</svg>")
    return "".join(out)
