"""Crawl benchmark (issue 5): armswatch end to end against a plain trafilatura loop.

A local web is built from the 181 real pages of the article-extraction benchmark,
repeated under new URLs up to N pages, listed by RSS feeds of 100 items each and served
from memory by an asyncio server on several loopback addresses (127.0.0.1-4), so that
neither the server nor per-domain concurrency limits the crawl. Printed side by side:

- armswatch end to end (`armswatch crawl --config`, a subprocess): pages/s;
- a single-process loop of `trafilatura.extract` over the same pages in memory: pages/s
  (run before and after the crawl, averaged: the machine's speed drifts);
- their ratio (goal >= 1.5);
- a second run with nothing new: article pages fetched (goal 0), wall time as a share
  of the first run (goal <= 10%);
- peak RSS of the crawl's whole process tree (parent + pool workers), at N and at a
  larger N (goal <= 300 MB, growth < 10%), read three ways: the tree's resident pages each
  counted once (its resident set as one; needs root, which alone may read page frame
  numbers), PSS (shared pages split between the processes that map them), and the
  per-process RSS summed (every shared page counted once per process that maps it).

Usage: python bench/crawl.py [--pages 2000] [--large 10000] [--baseline-pages N]
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import gzip
import hashlib
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent / "shared" / "data" / "article-extraction-benchmark" / "html"
HOSTS = ("127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4")
ITEMS_PER_FEED = 100


def load_corpus(folder: Path = CORPUS) -> list[bytes]:
    files = sorted(glob.glob(str(folder / "*.html.gz")))
    if not files:
        sys.exit(f"bench: no pages in {folder}")
    return [gzip.decompress(Path(f).read_bytes()) for f in files]


# -- the local web --------------------------------------------------------------------------


@dataclass
class LocalWeb:
    """N article pages behind N/100 feeds, spread over the loopback hosts, held in memory."""

    corpus: list[bytes]
    pages: int
    port: int = 0
    routes: dict[tuple[str, str], tuple[bytes, str, str]] = field(default_factory=dict)  # (host, path) -> body, type, etag
    article_hits: int = 0
    feed_hits: int = 0

    def page_url(self, i: int) -> tuple[str, str]:
        return HOSTS[i % len(HOSTS)], f"/news/{i // 1000}/story-{i}.html"

    def build(self) -> list[tuple[str, str]]:
        """Fill the routes; return (name, feed URL) of every feed."""
        feeds = []
        stamp = formatdate(usegmt=True)
        for k in range(0, self.pages, ITEMS_PER_FEED):
            host = HOSTS[(k // ITEMS_PER_FEED) % len(HOSTS)]
            items = []
            for i in range(k, min(k + ITEMS_PER_FEED, self.pages)):
                page_host, path = self.page_url(i)
                self.add(page_host, path, self.corpus[i % len(self.corpus)], "text/html")
                items.append(
                    f"<item><title>Story {i}</title><link>http://{page_host}:{{PORT}}{path}</link>"
                    f"<pubDate>{stamp}</pubDate><description>Story number {i}.</description></item>"
                )
            feed = f'<?xml version="1.0"?><rss version="2.0"><channel><title>Feed {k}</title><link>http://{host}/</link><description>bench</description>{"".join(items)}</channel></rss>'
            path = f"/feeds/{k // ITEMS_PER_FEED}.xml"
            self.add(host, path, feed.encode(), "application/rss+xml")
            feeds.append((f"feed {k // ITEMS_PER_FEED}", host, path))
        for host in HOSTS:
            self.add(host, "/robots.txt", b"User-agent: *\nAllow: /\n", "text/plain")
        return feeds

    def add(self, host: str, path: str, body: bytes, content_type: str) -> None:
        self.routes[(host, path)] = (body, content_type, "")

    def fix_port(self, port: int) -> None:
        """Feeds name the port, known only once the servers listen."""
        self.port = port
        for key, (body, content_type, _) in list(self.routes.items()):
            if content_type == "application/rss+xml":
                body = body.replace(b"{PORT}", str(port).encode())
            self.routes[key] = (body, content_type, '"' + hashlib.md5(body).hexdigest() + '"')

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """HTTP/1.1 with keep-alive, GET only, ETag / If-None-Match."""
        host = writer.get_extra_info("sockname")[0]
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                path = lines[0].split(" ")[1]
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        name, value = line.split(":", 1)
                        headers[name.strip().lower()] = value.strip()
                route = self.routes.get((host, path))
                if route is None:
                    writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                else:
                    body, content_type, etag = route
                    if content_type == "text/html":
                        self.article_hits += 1
                    elif content_type == "application/rss+xml":
                        self.feed_hits += 1
                    if etag and headers.get("if-none-match") == etag:
                        writer.write(f"HTTP/1.1 304 Not Modified\r\nETag: {etag}\r\nContent-Length: 0\r\n\r\n".encode())
                    else:
                        writer.write(
                            f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
                            f"ETag: {etag}\r\n\r\n".encode() + body
                        )
                await writer.drain()
                if headers.get("connection", "").lower() == "close":
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError, IndexError):
            pass
        finally:
            writer.close()

    def serve(self) -> None:
        """Start the servers (one per loopback host, same port) in a background thread."""
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            first = loop.run_until_complete(asyncio.start_server(self.handle, HOSTS[0], 0))
            port = first.sockets[0].getsockname()[1]
            for host in HOSTS[1:]:
                loop.run_until_complete(asyncio.start_server(self.handle, host, port))
            self.fix_port(port)
            ready.set()
            loop.run_forever()

        threading.Thread(target=run, daemon=True, name="bench-web").start()
        ready.wait(30)


# -- measuring ------------------------------------------------------------------------------


@dataclass
class TreeSample:
    """Memory of a process tree now, and CPU seconds per process seen so far."""

    rss: int = 0  # sum of resident sets (shared pages counted once per process)
    pss: int = 0  # sum of proportional sets (shared pages split): what the tree really holds
    resident: int | None = None  # the tree's resident pages, each counted once; None: not read
    cpu: dict[int, float] = field(default_factory=dict)  # pid -> user+system seconds
    roles: dict[int, str] = field(default_factory=dict)  # pid -> crawl / forkserver / worker / tracker
    rss_by_role: dict[str, list[int]] = field(default_factory=dict)
    pss_by_role: dict[str, list[int]] = field(default_factory=dict)


def _role(cmdline: bytes, depth: int) -> str:
    """What a process of the crawl's tree is (workers fork from the server)."""
    if depth == 0:
        return "crawl"
    if b"resource_tracker" in cmdline:
        return "tracker"
    return "forkserver" if depth == 1 else "worker"


TICKS = os.sysconf("SC_CLK_TCK")
SAMPLE_SECONDS = 0.05
PSS_EVERY = 40  # samples: PSS and the resident pages every two seconds (about 40 ms of CPU)
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
_PRESENT, _FRAME = 1 << 63, (1 << 55) - 1  # a /proc/PID/pagemap entry: page present, its frame number
_ENTRIES_PER_READ = 1 << 20


def resident_frames(pid: int):
    """The page frame numbers of every resident page `pid` maps (numpy array), from
    /proc/PID/pagemap; None when they read as 0, as for anyone but root since Linux 4.2."""
    import numpy as np

    chunks = []
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/pagemap", "rb") as pagemap:
        for line in maps:
            start, end = (int(address, 16) for address in line.split(None, 1)[0].split("-"))
            if start >= 1 << 63:  # [vsyscall]: no pagemap entries
                continue
            for first in range(start // PAGE_SIZE, end // PAGE_SIZE, _ENTRIES_PER_READ):  # 8 MB at most a read
                pagemap.seek(first * 8)
                count = min(_ENTRIES_PER_READ, end // PAGE_SIZE - first)
                entries = np.frombuffer(pagemap.read(count * 8), dtype=np.uint64)
                chunks.append(entries[(entries & np.uint64(_PRESENT)) != 0] & np.uint64(_FRAME))
    frames = np.concatenate(chunks) if chunks else np.empty(0, dtype=np.uint64)
    return None if frames.size and not frames.any() else frames


def resident_once(pids: list[int]) -> int | None:
    """Bytes of the pages resident in any of `pids`, each counted once however many map it."""
    import numpy as np

    frames = []
    for pid in pids:
        try:
            found = resident_frames(pid)
        except (FileNotFoundError, ProcessLookupError):
            continue
        except PermissionError:
            return None
        if found is None:
            return None
        frames.append(found)
    return int(np.unique(np.concatenate(frames)).size) * PAGE_SIZE if frames else None


def sample_tree(pid: int, sample: TreeSample, with_pss: bool, with_pages: bool = False) -> TreeSample:
    """Read /proc for a process and all its descendants (threads' children included).

    The resident set comes from /proc/PID/status, which is cheap; the proportional set needs
    smaps_rollup, a walk of the page tables that costs ~13 ms of CPU for the crawl's tree: read
    every 50 ms, it took a tenth of this 2-core machine away from the crawl it measures. So
    PSS is read only when `with_pss` (every two seconds: memory is a plateau after start-up),
    and the pages resident in the tree, each counted once, only when `with_pages` (5 ms more a
    process: both together, once a second, would take 2% of the machine from the crawl).
    """
    now = TreeSample(cpu=sample.cpu, roles=sample.roles)
    seen: list[int] = []
    stack = [(pid, 0)]
    while stack:
        current, depth = stack.pop()
        try:
            with open(f"/proc/{current}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            now.cpu[current] = (int(fields[11]) + int(fields[12])) / TICKS
            with open(f"/proc/{current}/status") as status:
                rss = next((int(line.split()[1]) * 1024 for line in status if line.startswith("VmRSS:")), 0)
            now.rss += rss
            if with_pss:
                with open(f"/proc/{current}/smaps_rollup") as rollup:
                    pss = next((int(line.split()[1]) * 1024 for line in rollup if line.startswith("Pss:")), 0)
                now.pss += pss
            if current not in now.roles:
                with open(f"/proc/{current}/cmdline", "rb") as cmdline:
                    now.roles[current] = _role(cmdline.read(), depth)
            now.rss_by_role.setdefault(now.roles[current], []).append(rss)
            if with_pss:
                now.pss_by_role.setdefault(now.roles[current], []).append(pss)
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as children:
                    stack.extend((int(c), depth + 1) for c in children.read().split())
            seen.append(current)
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    if with_pages:
        now.resident = resident_once(seen)
    return now


@dataclass(frozen=True)
class CrawlResult:
    seconds: float
    peak_rss: int
    peak_pss: int
    peak_resident: int | None  # None: page frame numbers could not be read (not root)
    peak_rss_by_role: dict[str, list[int]]  # at the moment of the peak RSS
    peak_pss_by_role: dict[str, list[int]]  # at the moment of the peak PSS
    cpu_main: float
    cpu_workers: float
    returncode: int
    output: str


def _read(log) -> str:
    log.seek(0)
    text = log.read()
    log.close()
    return text


def run_crawl(config: Path) -> CrawlResult:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    started = time.monotonic()
    # the log goes to a file: a pipe nobody reads until the end fills up and stalls the crawl
    log = tempfile.TemporaryFile("w+", encoding="utf-8")
    process = subprocess.Popen(
        [sys.executable, "-m", "crawler.cli", "crawl", "--config", str(config)],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, text=True,
    )
    sample, peak_rss, peak_pss, peak_rss_roles, peak_roles = TreeSample(), 0, 0, {}, {}
    peak_resident: int | None = None
    rounds = 0
    while process.poll() is None:
        with_pss = rounds % PSS_EVERY == 0
        sample = sample_tree(process.pid, sample, with_pss=with_pss, with_pages=with_pss)
        rounds += 1
        if sample.resident is not None:
            peak_resident = max(peak_resident or 0, sample.resident)
        if sample.rss > peak_rss:
            peak_rss, peak_rss_roles = sample.rss, sample.rss_by_role
        if sample.pss > peak_pss:
            peak_pss, peak_roles = sample.pss, sample.pss_by_role
        time.sleep(SAMPLE_SECONDS)
    seconds = time.monotonic() - started
    cpu_main = sum(t for pid, t in sample.cpu.items() if sample.roles.get(pid) == "crawl")
    cpu_workers = sum(t for pid, t in sample.cpu.items() if sample.roles.get(pid) != "crawl")  # with the forkserver
    return CrawlResult(seconds, peak_rss, peak_pss, peak_resident, peak_rss_roles, peak_roles, cpu_main,
                       cpu_workers, process.returncode, _read(log))


def write_config(folder: Path, feeds: list[tuple[str, str, str]], port: int) -> Path:
    lines = [
        "[crawl]",
        'db = "bench.db"',
        "download_delay = 0",
        "concurrency_per_domain = 16",
        "max_page_bytes = 5_000_000",
        "download_timeout = 60",
        "extraction_workers = 0",
        "",
    ]
    for name, host, path in feeds:
        lines += ["[[sources]]", f'name = "{name}"', f'url = "http://{host}:{port}{path}"', ""]
    config = folder / "bench.toml"
    config.write_text("\n".join(lines))
    return config


def count(db: Path, sql: str) -> int:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql).fetchone()[0]
    finally:
        conn.close()


def bench_crawl(corpus: list[bytes], pages: int, folder: Path, second_run: bool) -> dict:
    web = LocalWeb(corpus, pages)
    feeds = web.build()
    web.serve()
    config = write_config(folder, feeds, web.port)
    first = run_crawl(config)
    if first.returncode != 0:
        sys.exit(f"bench: crawl failed ({first.returncode}):\n{first.output[-3000:]}")
    result = {
        "pages": pages,
        "fetched": web.article_hits,
        "stored": count(folder / "bench.db", "select count(*) from articles"),
        "errors": count(folder / "bench.db", "select count(*) from fetch_errors"),
        "seconds": first.seconds,
        "pages_per_s": web.article_hits / first.seconds,
        "peak_rss": first.peak_rss,
        "peak_pss": first.peak_pss,
        "peak_resident": first.peak_resident,
        "peak_rss_by_role": first.peak_rss_by_role,
        "peak_pss_by_role": first.peak_pss_by_role,
        "cpu_main_ms": 1000 * first.cpu_main / max(web.article_hits, 1),
        "cpu_workers_ms": 1000 * first.cpu_workers / max(web.article_hits, 1),
        "summary": first.output.strip().splitlines()[-1] if first.output.strip() else "",
    }
    if second_run:
        before = web.article_hits
        second = run_crawl(config)
        result["second_fetched"] = web.article_hits - before
        result["second_seconds"] = second.seconds
        result["second_summary"] = second.output.strip().splitlines()[-1] if second.output.strip() else ""
    return result


def bench_trafilatura(corpus: list[bytes], pages: int) -> tuple[float, float]:
    """Plain single-process trafilatura.extract loop over the same pages: (pages/s, CPU ms per page)."""
    import trafilatura

    started, cpu = time.monotonic(), time.process_time()
    for i in range(pages):
        trafilatura.extract(corpus[i % len(corpus)], url=f"http://127.0.0.1/news/story-{i}.html")
    return pages / (time.monotonic() - started), 1000 * (time.process_time() - cpu) / pages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=2000)
    parser.add_argument("--large", type=int, default=10000, help="second size for the RSS growth figure (0: skip)")
    parser.add_argument("--baseline-pages", type=int, default=0, help="pages in the trafilatura loop (default: --pages)")
    args = parser.parse_args()
    corpus = load_corpus()
    cores = os.cpu_count()
    print(f"bench: {len(corpus)} distinct pages, {cores} cores, N = {args.pages}, load average {os.getloadavg()[0]:.1f}", flush=True)

    # the loop runs before and after the crawl and the two are averaged: this machine's speed
    # drifts by tens of percent over minutes, and a ratio of two runs minutes apart would show it
    loop_pages = args.baseline_pages or args.pages
    before, before_cpu_ms = bench_trafilatura(corpus, loop_pages)
    print(f"bench: trafilatura loop {before:.1f} pages/s ({before_cpu_ms:.1f} ms CPU per page)", flush=True)
    with tempfile.TemporaryDirectory(prefix="armswatch-bench-") as tmp:
        small = bench_crawl(corpus, args.pages, Path(tmp), second_run=True)
    print(f"bench: crawl N={args.pages}: {small['summary']}", flush=True)
    after, after_cpu_ms = bench_trafilatura(corpus, loop_pages)
    print(f"bench: trafilatura loop again {after:.1f} pages/s ({after_cpu_ms:.1f} ms CPU per page)", flush=True)
    baseline, baseline_cpu_ms = (before + after) / 2, (before_cpu_ms + after_cpu_ms) / 2
    large = None
    if args.large:
        with tempfile.TemporaryDirectory(prefix="armswatch-bench-") as tmp:
            large = bench_crawl(corpus, args.large, Path(tmp), second_run=False)
        print(f"bench: crawl N={args.large}: {large['summary']}", flush=True)

    mb = 1024 * 1024
    ratio = small["pages_per_s"] / baseline
    share = small["second_seconds"] / small["seconds"]
    cpu_ratio = (cores or 1) * baseline_cpu_ms / (small["cpu_main_ms"] + small["cpu_workers_ms"])
    rows = [
        ("armswatch end to end", f"{small['pages_per_s']:.1f} pages/s", f"{small['fetched']} fetched, {small['stored']} stored, {small['errors']} errors in {small['seconds']:.1f} s"),
        ("trafilatura.extract loop", f"{baseline:.1f} pages/s", f"one process, pages in memory; {before:.1f} before the crawl, {after:.1f} after"),
        ("ratio", f"{ratio:.2f}", "goal >= 1.5 " + ("OK" if ratio >= 1.5 else "MISSED")),
        ("second run: pages fetched", str(small["second_fetched"]), "goal 0 " + ("OK" if small["second_fetched"] == 0 else "MISSED")),
        ("second run: wall time", f"{share:.1%} of first", f"{small['second_seconds']:.1f} s; goal <= 10% " + ("OK" if share <= 0.10 else "MISSED")),
        *memory_rows(small, args.pages),
        ("CPU per page", f"{small['cpu_main_ms']:.1f} + {small['cpu_workers_ms']:.1f} ms", f"crawl process + extraction workers; the loop: {baseline_cpu_ms:.1f} ms"),
        ("CPU-bound ratio", f"{cpu_ratio:.2f}", f"{cores} cores / total CPU per page, vs the loop: the ratio an idle machine allows at best"),
    ]
    if large:
        # growth by the goal's reading, the tree's resident pages, where they could be read
        reading = "peak_resident" if small["peak_resident"] and large["peak_resident"] else "peak_rss"
        growth = large[reading] / small[reading] - 1
        rows += [
            *memory_rows(large, args.large),
            (f"speed, N={args.large}", f"{large['pages_per_s']:.1f} pages/s", f"{large['stored']} stored"),
            ("RSS growth", f"{growth:+.1%}", "goal < 10% " + ("OK" if growth < 0.10 else "MISSED")
             + ("" if reading == "peak_resident" else " (summed RSS)")),
        ]
    width = max(len(r[0]) for r in rows)
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f} (other processes on the machine skew every figure)")
    for name, value, note in rows:
        print(f"{name.ljust(width)}  {value.rjust(18)}  {note}")


def memory_rows(result: dict, pages: int) -> list[tuple[str, str, str]]:
    """The 300 MB goal read three ways at N = `pages`, each with its verdict; the two per-process
    readings with MB per process at their peak ("crawl 93, forkserver 42, tracker 7, worker 76 + 71")."""
    mb = 1024 * 1024

    def ok(value: int) -> str:
        return "goal <= 300 MB " + ("OK" if value <= 300 * mb else "MISSED")

    def by_role(reading: str) -> str:
        return ", ".join(f"{role} " + " + ".join(f"{value / mb:.0f}" for value in values)
                         for role, values in sorted(result[f"peak_{reading}_by_role"].items()))

    resident = result["peak_resident"]
    return [
        (f"peak RSS, N={pages}", f"{resident / mb:.0f} MB" if resident is not None else "n/a",
         f"{ok(resident)}: the tree's resident pages, each counted once" if resident is not None
         else "the tree's resident pages, each counted once: reading page frame numbers needs root"),
        (f"peak PSS, N={pages}", f"{result['peak_pss'] / mb:.0f} MB",
         f"{ok(result['peak_pss'])}: shared pages split between the processes: {by_role('pss')}"),
        (f"summed RSS, N={pages}", f"{result['peak_rss'] / mb:.0f} MB",
         f"{ok(result['peak_rss'])}: each shared page counted again in every process: {by_role('rss')}"),
    ]


if __name__ == "__main__":
    main()
