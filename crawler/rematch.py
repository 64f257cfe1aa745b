"""Re-run the rules over stored articles after a rule edit (`armswatch rematch`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from crawler.config import Config
from crawler.safe_text import shown
from storage.store import ArticleStore

READ_BATCH = 200  # articles read at a time: the whole archive's texts would not fit in memory


def rematch_store(config: Config, only_rules: Sequence[str] = (), echo: Callable[[str], None] = print) -> tuple[int, int]:
    """Match every stored article again; report per article what was added or removed.

    Old news newly matched is stored but not queued for alerting: alerts are for new stories.
    """
    from crawler.rules import load_rules

    rules = load_rules(config.crawl.rules)
    rule_names = list(only_rules) or list(rules.names)
    added_total = removed_total = 0
    with ArticleStore(config.crawl.db) as store:
        for row in stored_articles(store, READ_BATCH):
            matches = [m for m in rules.match(row["title"], row["text"] or "", row["language"]) if m.rule in rule_names]
            added, removed = store.replace_matches(row["id"], rule_names, matches)
            if added or removed:
                echo(f"  article {row['id']}: +{added} -{removed}  {shown(row['title'] or '', inline=True)}")
            added_total += added
            removed_total += removed
    return added_total, removed_total


def stored_articles(store: ArticleStore, batch: int) -> Iterator[dict[str, Any]]:
    """Every stored article in id order, read `batch` rows at a time."""
    last_id = 0
    while rows := store.query(
        "select id, title, text, language from articles where id > ? order by id limit ?", [last_id, batch]
    ):
        yield from rows
        last_id = rows[-1]["id"]
