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
