"""Shared fixtures: a real HTTP server on 127.0.0.1 and a way to run the real CLI.

Every crawl runs `armswatch` in a subprocess, as users and the scheduler do: Scrapy's
reactor cannot be restarted inside the pytest process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from crawler.demo_server import SiteServer

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def run_armswatch(*args: str, timeout: float = 240, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the armswatch CLI as a user would; return the finished process (text output)."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "crawler.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd or ROOT,
        env=full_env,
    )


@pytest.fixture
def site():
    """The fixture news site (tests/fixtures/site) served on a free loopback port."""
    with SiteServer(FIXTURES / "site") as server:
        yield server
