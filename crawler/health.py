"""The source health table as a user reads it in a terminal (`armswatch sources`)."""

from __future__ import annotations

from storage.store import ArticleStore

COLUMNS = [
    ("source", "source"),
    ("status", "status"),
    ("fails", "consecutive_failures"),
    ("last success", "last_success"),
    ("seen", "items_seen"),
    ("new", "items_new"),
    ("last new article", "last_new_article"),
    ("poll every", "poll_interval"),  # set by the scheduler (adaptive polling)
    ("error", "error"),
]


def health_table(db: str) -> str:
    with ArticleStore(db) as store:
        rows = store.source_health()
    if not rows:
        return "no sources yet: run `armswatch crawl` first"
    from crawler.polling import format_duration

    rows = [{**row, "poll_interval": format_duration(row.get("poll_interval"))} for row in rows]
    table = [[_cell(row.get(key)) for _, key in COLUMNS] for row in rows]
    widths = [min(max(len(h), *(len(r[i]) for r in table)), 60) for i, (h, _) in enumerate(COLUMNS)]
    lines = ["  ".join(h.ljust(w) for (h, _), w in zip(COLUMNS, widths))]
    for row in table:
        lines.append("  ".join(cell[:w].ljust(w) for cell, w in zip(row, widths)).rstrip())
    return "\n".join(lines)


def _cell(value: object) -> str:
    if value is None:
        return "-"
    return str(value).replace("\n", " ")
