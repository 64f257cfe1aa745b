"""The CPU-bound stage for one page: extract, clean, match. Runs in a process pool worker.

Kept apart from the pipelines so that it holds no Scrapy or database state: it is a
pure function of the downloaded page and the rule set loaded once per worker.
"""

from __future__ import annotations

import logging

from crawler.items import PageItem, ProcessedArticle, text_hash
from crawler.rules import DEFAULT_RULE_SETS, load_rules

logger = logging.getLogger(__name__)

_rules = None
_rule_specs: tuple[str, ...] = ()


def init_worker(rule_specs: tuple[str, ...]) -> None:
    """Load the rule set once per worker process (or keep the one the forkserver preloaded)."""
    global _rules, _rule_specs
    if _rules is not None and _rule_specs == tuple(rule_specs):
        return
    _rules = load_rules(rule_specs)
    _rule_specs = tuple(rule_specs)


def worker_ready() -> bool:
    """A task that only proves a worker is up (the pipeline starts the pool with it)."""
    return True


def process_page(page: PageItem, rule_specs: tuple[str, ...] = DEFAULT_RULE_SETS) -> ProcessedArticle:
    """PageItem -> ProcessedArticle; never raises (errors are returned, to be recorded)."""
    from crawler.extraction import extract_article

    try:
        if _rules is None:
            init_worker(rule_specs)
        article = extract_article(page.body, page.final_url, page.headers, page.entry)
        if article is None:
            return ProcessedArticle(page.url, page.source, None, error="no article text on the page or in the feed entry",
                                    state_affiliated=page.state_affiliated)
        matches = _rules.match(article.title, article.text, article.language)
        return ProcessedArticle(
            page_url=page.url,
            source=page.source,
            article=article,
            matches=tuple(matches),
            state_affiliated=page.state_affiliated,
            content_hash=text_hash(article.text),
            fingerprint=_fingerprint(article, page.source),
        )
    except Exception as exc:  # a bad page must not stop the crawl
        logger.exception("processing %s failed", page.url)
        return ProcessedArticle(page.url, page.source, None, error=f"{type(exc).__name__}: {exc}",
                                state_affiliated=page.state_affiliated)


def _fingerprint(article, source: str):
    """The story-clustering fingerprint, or None (the writer then computes it) if it fails."""
    from crawler.clustering import article_fingerprint

    try:
        return article_fingerprint(article.title, article.text, source, article.site_name, article.language)
    except Exception:
        logger.exception("fingerprint of %s failed", article.url)
        return None
