"""The CPU-bound stage for one page: extract, clean, match. Runs in a process pool worker.

Kept apart from the pipelines so that it holds no Scrapy or database state: it is a
pure function of the downloaded page and the rule set loaded once per worker.
"""

from __future__ import annotations

import logging
import os
import select
import threading
import time

from crawler.items import PageItem, ProcessedArticle, text_hash
from crawler.rules import DEFAULT_RULE_SETS, load_rules

logger = logging.getLogger(__name__)

NO_ARTICLE_TEXT = "no article text on the page or in the feed entry"  # the page's doing: not retried

_rules = None
_rule_specs: tuple[str, ...] = ()


def init_worker(rule_specs: tuple[str, ...], crawl_pid: int | None = None) -> None:
    """Load the rule set once per worker process (or keep the one the forkserver preloaded), and
    end the worker when the crawl process `crawl_pid` dies."""
    global _rules, _rule_specs
    if crawl_pid is not None:
        threading.Thread(target=_exit_when_gone, args=(crawl_pid,), name="armswatch-crawl-watch", daemon=True).start()
    if _rules is not None and _rule_specs == tuple(rule_specs):
        return
    _rules = load_rules(rule_specs)
    _rule_specs = tuple(rule_specs)


def _exit_when_gone(pid: int) -> None:
    """A crawl killed with SIGKILL (a hung run the scheduler gave up on) tells its workers
    nothing: they would wait for work forever, holding the pool's queues and so the forkserver
    too, some 100 MB each. The worker waits for the crawl process's end and exits with it."""
    try:
        handle = os.pidfd_open(pid)
    except (AttributeError, OSError):  # no pidfd (an old kernel): look once a second
        handle = None
    if handle is not None:
        select.select([handle], [], [])
    else:
        while True:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            except PermissionError:  # alive, and no longer ours to signal: its pid was reused
                break
            time.sleep(1.0)
    os._exit(1)


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
            return ProcessedArticle(page.url, page.source, None, error=NO_ARTICLE_TEXT,
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
