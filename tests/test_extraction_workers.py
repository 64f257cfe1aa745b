"""The extraction workers: forked from a preloaded server, behind the crawl process in priority."""

from __future__ import annotations

import http.server
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor

import pytest

from crawler.extraction_server import WORKER_NICENESS, extraction_context
from tests.conftest import ROOT, rows


@pytest.mark.skipif(not hasattr(os, "nice"), reason="no process priorities here")
def test_extraction_workers_give_way_to_the_crawl_process():
    """Extraction is the CPU hog: downloads, their timeouts and SQLite writes go first."""
    with ProcessPoolExecutor(1, mp_context=extraction_context()) as pool:
        worker_niceness = pool.submit(os.nice, 0).result(timeout=120)
    assert worker_niceness == min(os.nice(0) + WORKER_NICENESS, 19)


def stoplists_in_this_process() -> tuple[int, int, bool, bool]:
    """In a worker: the stoplist jusText reads for trafilatura's all-language list, against the
    lower-cased union of jusText's own lists; (stopwords it misses, other words it holds, whether
    trafilatura keeps no second copy of the words, whether another list is still jusText's own)."""
    import justext.core
    from justext.utils import get_stoplist, get_stoplists
    from trafilatura import external

    union = frozenset(word.lower() for language in get_stoplists() for word in get_stoplist(language))
    stopwords = justext.core.define_stoplist(external.JT_STOPLIST or external.jt_stoplist_init())
    missed = sum(word not in stopwords for word in union)
    others = [word + suffix for word in sorted(union)[::50] for suffix in ("x", "ще", "1")] + ["drones", "shahed", ""]
    extra = sum(word in stopwords for word in others if word not in union)
    english = get_stoplist("English")
    return (missed, extra, stopwords is external.JT_STOPLIST and len(stopwords) == len(union),
            justext.core.define_stoplist(english) == frozenset(word.lower() for word in english))


def test_workers_read_the_jusText_stopwords_from_one_compact_copy():
    """150,000 stopwords of all languages, for trafilatura's jusText fallback: every one of them,
    and no other word, held once by the server in a compact trie that trafilatura hands to jusText
    (17 MB of strings and sets in every process before), while other lists stay jusText's own."""
    with ProcessPoolExecutor(1, mp_context=extraction_context()) as pool:
        missed, extra, one_compact_copy, other_lists = pool.submit(stoplists_in_this_process).result(timeout=120)
    assert (missed, extra) == (0, 0)
    assert one_compact_copy and other_lists


def descendants(pid: int) -> set[int]:
    """Every live process below `pid`: the forkserver, its workers, the resource tracker."""
    found: set[int] = set()
    stack = [pid]
    while stack:
        current = stack.pop()
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as children:
                    for child in map(int, children.read().split()):
                        if child not in found:
                            found.add(child)
                            stack.append(child)
        except FileNotFoundError:
            continue
    return found


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


class HangingArticles(http.server.BaseHTTPRequestHandler):
    """A feed of two articles: the first answers, the second hangs until the test ends."""

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        base = f"http://127.0.0.1:{self.server.server_address[1]}"
        if self.path == "/feed.xml":
            items = "".join(f"<item><title>{n}</title><link>{base}/{n}.html</link></item>" for n in ("quick", "hang"))
            body = f'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>{items}</channel></rss>'.encode()
        elif self.path == "/quick.html":
            body = ("<html><body><article><h1>Quick</h1>" + "<p>Russia bought Shahed drones from Iran.</p>" * 20
                    + "</article></body></html>").encode()
        elif self.path == "/hang.html":
            self.server.release.wait(120)
            return
        else:
            self.send_response(404)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs Linux /proc")
def test_a_crawl_killed_with_sigkill_leaves_no_extraction_process_behind(tmp_path):
    """The scheduler kills a hung crawl with SIGKILL; its workers and their server must not live on."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), HangingArticles)
    server.daemon_threads = True
    server.release = threading.Event()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    config = tmp_path / "c.toml"
    config.write_text(f'[crawl]\ndb = "x.db"\ndownload_delay = 0\ndownload_timeout = 120\n\n'
                      f'[[sources]]\nname = "wire"\nurl = "http://127.0.0.1:{server.server_address[1]}/feed.xml"\n')
    crawl = subprocess.Popen([sys.executable, "-m", "crawler.cli", "crawl", "--config", str(config)], cwd=tmp_path,
                             env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not rows_exist(tmp_path / "x.db") and time.monotonic() < deadline:  # the quick article went through a worker
            time.sleep(0.2)
        below = descendants(crawl.pid)
        assert len(below) >= 3, below  # forkserver, a worker, the resource tracker
        crawl.kill()
        crawl.wait()
        deadline = time.monotonic() + 20
        while any(alive(pid) for pid in below) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert [pid for pid in below if alive(pid)] == []
    finally:
        server.release.set()
        for pid in descendants(crawl.pid) | (below if "below" in locals() else set()):
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        server.shutdown()


def rows_exist(db) -> bool:
    try:
        return bool(rows(db, "select 1 from articles"))
    except sqlite3.Error:
        return False
