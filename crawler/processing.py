"""The CPU-bound stage for one page: extract, clean, match. Runs in a process pool worker.

Kept apart from the pipelines so that it holds no Scrapy or database state: it is a
pure function of the downloaded page and the rule set loaded once per worker.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from crawler.items import PageItem, ProcessedArticle, text_hash
from crawler.rules import DEFAULT_RULE_SETS, load_rules

logger = logging.getLogger(__name__)

NO_ARTICLE_TEXT = "no article text on the page or in the feed entry"  # the page's doing: not retried

_rules = None
_rule_specs: tuple[str, ...] = ()
_time_limit: float | None = None  # seconds one page may take; set in pool workers only


class ExtractionTooSlow(BaseException):
    """A page took longer than the time limit. A BaseException: the `except Exception` of
    trafilatura and of the extraction's own fallbacks must not swallow it and go on."""


def init_worker(rule_specs: tuple[str, ...], crawl_pid: int | None = None, time_limit: float | None = None) -> None:
    """Load the rule set once per worker process (or keep the one the forkserver preloaded), end
    the worker when the crawl process `crawl_pid` dies, and stop any page after `time_limit` s."""
    global _rules, _rule_specs, _time_limit
    if time_limit is not None:
        _time_limit = time_limit
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
    from crawler.extraction import entry_article, extract_article

    try:
        if _rules is None:
            init_worker(rule_specs)
        try:
            with _stopped_after(_time_limit):
                article = extract_article(page.body, page.final_url, page.headers, page.entry)
        except ExtractionTooSlow:
            # trafilatura slows down more than linearly on some pages (a paragraph of 100,000
            # links took minutes and 700 MB); what the feed said is kept
            logger.warning("extracting %s took over %s s: stopped", page.url, _time_limit)
            article = entry_article(page.final_url, page.entry)
            if article is None:
                return ProcessedArticle(page.url, page.source, None, state_affiliated=page.state_affiliated,
                                        error=f"extraction stopped after {_time_limit:g} s: the page is too complex")
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


@contextmanager
def _stopped_after(seconds: float | None) -> Iterator[None]:
    """Raise ExtractionTooSlow in this (main) thread after `seconds`; nothing when None.

    A page that takes the whole time holds one worker and, being counted among the pages
    waiting for extraction, can hold back the crawl's downloads: no page may cost the others
    more than a download's time limit."""
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return

    def too_slow(signum: int, frame: object) -> None:
        raise ExtractionTooSlow()

    previous = signal.signal(signal.SIGALRM, too_slow)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _fingerprint(article, source: str):
    """The story-clustering fingerprint, or None (the writer then computes it) if it fails."""
    from crawler.clustering import article_fingerprint

    try:
        return article_fingerprint(article.title, article.text, source, article.site_name, article.language)
    except Exception:
        logger.exception("fingerprint of %s failed", article.url)
        return None
