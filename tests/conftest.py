"""Shared fixtures: a real HTTP server on 127.0.0.1 and a way to run the real CLI.

Every crawl runs `armswatch` in a subprocess, as users and the scheduler do: Scrapy's
reactor cannot be restarted inside the pytest process.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from crawler.demo_server import SiteServer

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
# The five seed stories as a naive scraper captured them (copies of ../shared/seeds, so the
# suite runs from a clean clone with nothing beside it).
SEED_TEXTS = Path(__file__).resolve().parent / "rules_devset" / "seeds"


# Runs a command and reports the peak resident memory of its process tree on its last stderr line.
_MEASURE = (
    "import resource, subprocess, sys; code = subprocess.call(sys.argv[1:]);"
    " print('peak_rss_kb', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr);"
    " sys.exit(code)"
)


def run_armswatch(*args: str, timeout: float = 240, cwd: Path | None = None, env: dict | None = None,
                  measure_memory: bool = False) -> subprocess.CompletedProcess:
    """Run the armswatch CLI as a user would; return the finished process (text output).

    With `measure_memory`, the result gets `peak_rss_mb`: the largest process of the command's
    own tree (the crawl or one of its workers), not of anything else the test session ran.
    """
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    prefix = [sys.executable, "-c", _MEASURE] if measure_memory else []
    result = subprocess.run(
        [*prefix, sys.executable, "-m", "crawler.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd or ROOT,
        env=full_env,
    )
    if measure_memory:
        head, _, last = result.stderr.rstrip("\n").rpartition("\n")
        result.peak_rss_mb = int(last.split()[1]) / 1024
        result.stderr = head
    return result


def rows(db: Path | str, sql: str, params: tuple = ()) -> list[dict]:
    """What a user would see querying the database file: every row as a dict."""
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(sql, params)]
    finally:
        conn.close()


def free_port() -> int:
    """A loopback port nobody listens on (for a server a test starts, or one it keeps down)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def site():
    """The fixture news site (tests/fixtures/site) served on a free loopback port."""
    with SiteServer(FIXTURES / "site") as server:
        yield server
