"""What an analyst sees: `armswatch browse` rendered by headless Chromium, saved as PNG.

Set ARMSWATCH_SCREENSHOTS=1 to copy the screenshots to tests/artifacts/ for a human (or CI
artifact upload) to look at. Skipped when Chromium is not installed
(`apt-get install -y chromium`).
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess

import pytest

from tests.conftest import ROOT
from tests.test_browse import build_archive, free_port, start_browse, wait_for

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
WIDTH, HEIGHT = 1400, 1600

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed (apt-get install -y chromium)")


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", data[16:24])


def screenshot(url: str, out, profile) -> bytes:
    subprocess.run(
        [
            CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--hide-scrollbars", f"--user-data-dir={profile}", f"--screenshot={out}",
            f"--window-size={WIDTH},{HEIGHT}", url,
        ],
        capture_output=True, timeout=90, check=False,
    )
    assert out.exists(), f"Chromium wrote no screenshot of {url}"
    return out.read_bytes()


@pytest.mark.parametrize("page", ["matches", "matches_per_week"])
def test_pages_render_in_a_real_browser(tmp_path, page):
    db = build_archive(tmp_path / "archive.db")
    port = free_port()
    server = start_browse(db, port)
    try:
        url = f"http://127.0.0.1:{port}/armswatch/{page}"
        wait_for(url)
        png = screenshot(url, tmp_path / f"{page}.png", tmp_path / "chromium-profile")
    finally:
        server.terminate()
        server.communicate(timeout=10)
    assert png_size(png) == (WIDTH, HEIGHT)
    # a blank or error page compresses to a few KB; a page with facets, rows (and a chart) does not
    assert len(png) > 40_000, len(png)
    if os.environ.get("ARMSWATCH_SCREENSHOTS"):
        artifacts = ROOT / "tests" / "artifacts"
        artifacts.mkdir(exist_ok=True)
        shutil.copy(tmp_path / f"{page}.png", artifacts / f"browse-{page}.png")
