"""A Datasette output renderer that draws a query's rows as a stacked bar chart in SVG.

Any query returning the columns `week`, `supplier` and `matches` gets a `.svg` link
(the saved query `matches_per_week` does). The chart is drawn on the server, so it works
offline and in email: no JavaScript, no CDN. Every label is XML-escaped.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta
from html import escape
from typing import Any

from datasette import hookimpl
from datasette.utils.asgi import Response

COLUMNS = {"week", "supplier", "matches"}
MAX_SERIES = 8  # the biggest suppliers get a colour each; the rest are summed as "other"
PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7"]
GREYS = {"unknown": "#9d9d9d", "other": "#c9c9c9"}
WIDTH, HEIGHT = 960, 380
LEFT, RIGHT, TOP, BOTTOM = 48, 190, 40, 60


@hookimpl
def register_output_renderer(datasette):
    return {"extension": "svg", "render": render_svg, "can_render": can_render_svg}


def can_render_svg(columns: list[str]) -> bool:
    return COLUMNS.issubset(columns)


def render_svg(columns: list[str], rows: list[Any], query_name: str | None) -> Response:
    if not can_render_svg(columns):
        return Response.text("This query needs the columns week, supplier and matches to be drawn.", status=400)
    counts = weekly_counts((row["week"], row["supplier"], row["matches"]) for row in rows)
    title = "Matches per week by supplier" if query_name in (None, "matches_per_week") else query_name
    return Response(
        stacked_bars_svg(counts, title),
        content_type="image/svg+xml; charset=utf-8",
        headers={"Cache-Control": "no-cache"},
    )


def weekly_counts(rows) -> dict[date, dict[str, int]]:
    """{monday: {supplier: matches}}, with the weeks between the first and last filled with zeros."""
    counts: dict[date, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for week, supplier, matches in rows:
        try:
            day = date.fromisoformat(str(week)[:10])
        except ValueError:
            continue
        counts[day - timedelta(days=day.weekday())][str(supplier or "unknown")] += int(matches or 0)
    if counts:
        day, last = min(counts), max(counts)
        while day < last:
            counts[day]  # touch: an empty week is a zero bar, not a gap that hides a quiet week
            day += timedelta(days=7)
    return {week: dict(counts[week]) for week in sorted(counts)}


def _series(counts: dict[date, dict[str, int]]) -> list[str]:
    totals: dict[str, int] = defaultdict(int)
    for week in counts.values():
        for supplier, n in week.items():
            totals[supplier] += n
    named = sorted((s for s in totals if s not in GREYS), key=lambda s: (-totals[s], s))
    keep = named[:MAX_SERIES]
    extra = ["other"] if len(named) > MAX_SERIES or "other" in totals else []
    return keep + extra + (["unknown"] if "unknown" in totals else [])


def _step(top: int) -> int:
    """A round tick step (1, 2, 5, 10, 20, 50...) giving at most six gridlines up to `top`."""
    magnitude = 1
    while True:
        for step in (magnitude, 2 * magnitude, 5 * magnitude):
            if top / step <= 6:
                return step
        magnitude *= 10


def stacked_bars_svg(counts: dict[date, dict[str, int]], title: str) -> str:
    """The chart as a standalone SVG document."""
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}"'
        ' font-family="Helvetica, Arial, sans-serif" font-size="12" role="img">',
        f"<title>{escape(title)}</title>",
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>',
        f'<text x="{LEFT}" y="22" font-size="16" font-weight="bold" fill="#222">{escape(title)}</text>',
    ]
    if not counts:
        out.append(f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle" fill="#666">No matches yet</text>')
        return "\n".join(out + ["</svg>"])
    series = _series(counts)
    colours = {name: GREYS.get(name) or PALETTE[i % len(PALETTE)] for i, name in enumerate(series)}
    merged = {
        week: {name: (sum(n for s, n in by.items() if s not in series) if name == "other" else 0) + by.get(name, 0)
               for name in series}
        for week, by in counts.items()
    }
    top = max(1, max(sum(by.values()) for by in merged.values()))
    step = _step(top)
    top = -(-top // step) * step
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    base = TOP + plot_h
    for tick in range(0, top + 1, step):
        y = base - plot_h * tick / top
        out.append(f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e4e4e4"/>')
        out.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" fill="#555">{tick}</text>')
    weeks = list(merged)
    slot = plot_w / len(weeks)
    bar = max(1.0, slot * 0.8)
    label_every = max(1, round(len(weeks) / 10))
    for i, week in enumerate(weeks):
        x = LEFT + i * slot + (slot - bar) / 2
        y = base
        for name in series:
            n = merged[week][name]
            if not n:
                continue
            h = plot_h * n / top
            y -= h
            out.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" fill="{colours[name]}">'
                f"<title>{escape(f'week of {week.isoformat()}: {name}, {n}')}</title></rect>"
            )
        if i % label_every == 0:
            cx = LEFT + i * slot + slot / 2
            out.append(
                f'<text x="{cx:.1f}" y="{base + 16}" text-anchor="end" fill="#555" '
                f'transform="rotate(-35 {cx:.1f} {base + 16})">{week.isoformat()}</text>'
            )
    out.append(f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{base}" y2="{base}" stroke="#888"/>')
    legend_x = LEFT + plot_w + 20
    for i, name in enumerate(series):
        y = TOP + i * 20
        total = sum(merged[w][name] for w in weeks)
        out.append(f'<rect x="{legend_x}" y="{y}" width="12" height="12" fill="{colours[name]}"/>')
        out.append(f'<text x="{legend_x + 18}" y="{y + 10}" fill="#222">{escape(name[:24])} ({total})</text>')
    return "\n".join(out + ["</svg>"])
