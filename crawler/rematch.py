"""Re-run the rules over stored articles after a rule edit (`armswatch rematch`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from crawler.config import Config
from storage.store import ArticleStore


def rematch_store(config: Config, only_rules: Sequence[str] = (), echo: Callable[[str], None] = print) -> tuple[int, int]:
    """Match every stored article again; report per article what was added or removed.

    Old news newly matched is stored but not queued for alerting: alerts are for new stories.
    """
    from crawler.rules import load_rules

    rules = load_rules(config.crawl.rules)
    rule_names = list(only_rules) or list(rules.names)
    added_total = removed_total = 0
    with ArticleStore(config.crawl.db) as store:
        for row in store.query("select id, title, text, language from articles order by id"):
            matches = [m for m in rules.match(row["title"], row["text"] or "", row["language"]) if m.rule in rule_names]
            added, removed = store.replace_matches(row["id"], rule_names, matches)
            if added or removed:
                echo(f"  article {row['id']}: +{added} -{removed}  {row['title']}")
            added_total += added
            removed_total += removed
    return added_total, removed_total
