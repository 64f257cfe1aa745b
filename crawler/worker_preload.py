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
from crawler.memory import give_back_free_memory, return_large_allocations
from crawler.processing import init_worker, process_page
from crawler.rules import DEFAULT_RULE_SETS

LOGGER = logging.getLogger(__name__)
WARM_UP_PAGE = Path(__file__).with_name("demo_site") / "articles" / "seed-000.html"


def share_stoplist_words() -> bool:
    """Hold trafilatura's all-language jusText stoplist as one compact trie, built here, once.

    trafilatura gathers the stopwords of all languages (150,000, already lower-cased by jusText)
    for its jusText fallback, and jusText's `define_stoplist` turns them into a set: 17 MB of
    strings, tuple and set in the server and, as the forked pages count, in every worker, for a
    fallback that reads a few words a page. A marisa trie answers the same `word in stoplist`
    for the same words in 0.6 MB. trafilatura then passes the trie to jusText, which gets it back
    from `define_stoplist` and still builds every other list itself. False, and jusText's own set
    built, if some word is not lower-case (jusText's set would not hold it as it is)."""
    import marisa_trie
    from justext import core as justext_core
    from trafilatura import external

    words = external.jt_stoplist_init()
    if not all(word.lower() == word for word in words):
        justext_core.define_stoplist(words)
        return False
    stoplist = marisa_trie.Trie(words)
    external.JT_STOPLIST = stoplist  # what try_justext hands to jusText; the words' tuple is freed
    builds_stoplist = justext_core.define_stoplist

    def define_stoplist(given):
        return stoplist if given is stoplist else builds_stoplist(given)

    justext_core.define_stoplist = define_stoplist  # looked up by jusText's classify_paragraphs at each call
    return True


def warm_up() -> None:
    """Run the worker's whole path once, on a bundled page; a failure only costs the warm-up."""
    try:
        share_stoplist_words()
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
give_back_free_memory()  # what the warm-up freed, before the workers inherit it
gc.freeze()
