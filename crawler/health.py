"""The source health table as a user reads it in a terminal (`armswatch sources`)."""

from __future__ import annotations

from crawler.safe_text import shown
from storage.store import ArticleStore

COLUMNS = [
    ("source", "source"),
    ("status", "status"),
    ("fails", "consecutive_failures"),
    ("last attempt", "last_attempt"),
    ("last success", "last_success"),
    ("seen", "items_seen"),
    ("new", "items_new"),
    ("last new article", "last_new_article"),
    ("poll every", "poll_interval"),  # set by the scheduler (adaptive polling)
]
MAX_WIDTH = 40  # of a column (a long source name)
MAX_ERROR = 500  # the error goes whole on a line of its own: its reason comes after a URL
TIMES = {"last_attempt", "last_success", "last_new_article"}


def health_table(db: str) -> str:
    with ArticleStore(db) as store:
        rows = store.source_health()
    if not rows:
        return "no sources yet: run `armswatch crawl` first"
    from crawler.polling import format_duration

    rows = [{**row, "poll_interval": format_duration(row.get("poll_interval"))} for row in rows]
    table = [[_cell(row.get(key), key) for _, key in COLUMNS] for row in rows]
    widths = [min(max(len(h), *(len(r[i]) for r in table)), MAX_WIDTH) for i, (h, _) in enumerate(COLUMNS)]
    lines = ["  ".join(h.ljust(w) for (h, _), w in zip(COLUMNS, widths)).rstrip()]
    for row, cells in zip(rows, table):
        lines.append("  ".join(cell[:w].ljust(w) for cell, w in zip(cells, widths)).rstrip())
        if row.get("error"):
            lines.append(f"    error: {_cell(row['error'], 'error')[:MAX_ERROR]}")
    lines.append(summary(rows))
    return "\n".join(lines)


def summary(rows: list[dict]) -> str:
    """The table's last line, for a list of hundreds: how many sources, and how many fail and why.
    "400 sources: 124 failing (64 timeout, 20 refused, 16 HTTP 500, ...), 3 partial, 2 never crawled"."""
    failing: dict[str, int] = {}
    never = partial = 0
    for row in rows:
        if row.get("status") is None:
            never += 1
        elif row.get("consecutive_failures"):
            failing[row["status"]] = failing.get(row["status"], 0) + 1
        elif row.get("status") == "partial":
            partial += 1
    parts = []
    if failing:
        reasons = ", ".join(f"{n} {status}" for status, n in sorted(failing.items(), key=lambda kv: (-kv[1], kv[0])))
        parts.append(f"{sum(failing.values())} failing ({shown(reasons, inline=True)})")
    else:
        parts.append("none failing")
    if partial:
        parts.append(f"{partial} partial")
    if never:
        parts.append(f"{never} never crawled")
    return f"{len(rows)} source{'' if len(rows) == 1 else 's'}: " + ", ".join(parts)


def _cell(value: object, key: str) -> str:
    if value is None:
        return "-"
    if key in TIMES:  # "2026-12-02T05:01:20+00:00" -> "2026-12-02 05:01Z": times are stored in UTC
        return str(value)[:16].replace("T", " ") + "Z"
    return shown(value, inline=True)  # before any cut to width: a source's text must not rewrite the table
