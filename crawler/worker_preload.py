"""Imported once by the extraction pool's forkserver: the workers' whole stack, loaded and warmed.

Every worker forks from the server, so what is loaded here (trafilatura and its lazy imports,
jusText's stoplists, the language model, the default rule set, numpy) costs
memory and start-up time once instead of once per worker. A warm-up extraction of a bundled
page fills the regex and XPath caches the same way. `gc.freeze()` then moves all of it out of
the collector's sight: a collection in a worker would otherwise write to every shared object
and turn the server's pages into private copies. Large allocations are kept out of the C heap
(crawler.memory), so that a worker gives back what its biggest page took.
"""

from __future__ import annotations

import gc
import logging
import os
from pathlib import Path

from crawler.extraction_server import WORKER_NICENESS
from crawler.items import PageItem
from crawler.memory import return_large_allocations
from crawler.processing import init_worker, process_page
from crawler.rules import DEFAULT_RULE_SETS

LOGGER = logging.getLogger(__name__)
WARM_UP_PAGE = Path(__file__).with_name("demo_site") / "articles" / "seed-000.html"


def warm_up() -> None:
    """Run the worker's whole path once, on a bundled page; a failure only costs the warm-up."""
    try:
        from justext.core import define_stoplist
        from trafilatura.external import jt_stoplist_init

        # 150,000 stopwords of all languages, and jusText's lower-cased set of them (15 MB), both
        # otherwise built in each worker on its first page that needs jusText
        define_stoplist(jt_stoplist_init())
        init_worker(DEFAULT_RULE_SETS)
        body = WARM_UP_PAGE.read_bytes()
        url = "http://127.0.0.1/warm-up.html"
        process_page(PageItem(url=url, final_url=url, body=body, headers={}, status=200, source="warm-up"))
    except Exception:
        LOGGER.debug("worker warm-up failed", exc_info=True)


return_large_allocations()  # the workers, forked from this process, keep the setting
if hasattr(os, "nice"):
    os.nice(WORKER_NICENESS)  # and this priority
warm_up()
gc.collect()
gc.freeze()
