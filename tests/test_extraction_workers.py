"""The extraction workers: forked from a preloaded server, behind the crawl process in priority."""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor

import pytest

from crawler.extraction_server import WORKER_NICENESS, extraction_context


@pytest.mark.skipif(not hasattr(os, "nice"), reason="no process priorities here")
def test_extraction_workers_give_way_to_the_crawl_process():
    """Extraction is the CPU hog: downloads, their timeouts and SQLite writes go first."""
    with ProcessPoolExecutor(1, mp_context=extraction_context()) as pool:
        worker_niceness = pool.submit(os.nice, 0).result(timeout=120)
    assert worker_niceness == min(os.nice(0) + WORKER_NICENESS, 19)


def stoplists_in_this_process() -> tuple[bool, bool, bool]:
    """In a worker: is trafilatura's all-language stoplist, as jusText reads it, what jusText itself
    would build (the same lower-cased words), made of the list's own strings; and is another list
    still jusText's own?"""
    from justext.core import define_stoplist
    from justext.utils import get_stoplist
    from trafilatura.external import JT_STOPLIST

    stopwords = define_stoplist(JT_STOPLIST)
    same_words = stopwords == frozenset(word.lower() for word in JT_STOPLIST)
    members = {id(member) for member in stopwords}
    held_once = all(id(word) in members for word in JT_STOPLIST)
    english = get_stoplist("English")
    return same_words, held_once, define_stoplist(english) == frozenset(word.lower() for word in english)


def test_workers_share_one_copy_of_the_jusText_stopwords():
    """150,000 stopwords of all languages, for trafilatura's jusText fallback: one set built by the
    server from the list's own strings, not a second copy of each word in every worker."""
    with ProcessPoolExecutor(1, mp_context=extraction_context()) as pool:
        same_words, held_once, other_lists = pool.submit(stoplists_in_this_process).result(timeout=120)
    assert same_words and held_once and other_lists
