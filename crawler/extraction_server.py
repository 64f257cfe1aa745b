"""The extraction workers' forkserver: the context the pool forks its workers from, started early.

The server imports and warms the workers' whole stack once (crawler.worker_preload) and every
worker forks from it, sharing those pages. Loading takes one to two seconds of CPU, so the crawl
command starts the server before it even imports Scrapy: the stack loads on the other core
while Scrapy starts and the feeds are fetched, and the first article finds its workers ready.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.forkserver
from multiprocessing.context import ForkServerContext

WORKER_PRELOAD = ["crawler.worker_preload"]
# Extraction is the crawl's CPU hog and never in a hurry: the crawl process (downloads, their
# timeouts, SQLite writes) and the machine's other programs go first. Set by the preload.
WORKER_NICENESS = 5


def extraction_context() -> ForkServerContext:
    """forkserver: workers never inherit the reactor's threads or open sockets, and share the
    server's preloaded stack instead of loading their own copy."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(WORKER_PRELOAD)
    return context


def start_extraction_server() -> None:
    """Start the server now if it is not running; returns at once (the loading goes on there).

    A run that finds nothing new never uses it and does not wait for it: the server exits with
    the process that started it."""
    extraction_context()
    multiprocessing.forkserver.ensure_running()
