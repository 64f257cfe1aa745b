"""Memory a finished page used goes back to the system, in a process that set it so (glibc)."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Both scripts below start with this: the process's resident memory, as the system counts it.
RESIDENT_KB = """
def resident_kb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
"""


def still_held_mb(script: str, mode: str) -> float:
    """What a script run in a process of its own, in `mode`, prints: the MB it still holds."""
    done = subprocess.run([sys.executable, "-c", RESIDENT_KB + script, mode], cwd=ROOT, capture_output=True, text=True, check=True)
    return float(done.stdout)

# Frees 100 blocks of 300 KB after one of 1 MB, with small blocks kept between them: what a run of
# pages leaves behind. Prints how much of it the process still holds.
PAGES_COME_AND_GO = """
import sys
from crawler.memory import return_large_allocations

if sys.argv[1] == "returned":
    assert return_large_allocations()
largest = bytearray(1_000_000)
del largest
before = resident_kb()
pages, kept = [], []
for _ in range(100):
    pages.append(bytearray(300_000))
    kept.append(bytearray(4_000))
del pages
print((resident_kb() - before) / 1024)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="allocation thresholds are a glibc setting")
def test_memory_of_pages_done_with_goes_back_to_the_system():
    assert still_held_mb(PAGES_COME_AND_GO, "returned") < 3
    assert still_held_mb(PAGES_COME_AND_GO, "as glibc starts") > 15  # what the setting is for: the same run without it


# Frees 20,000 blocks of 3 KB with one in fifty kept between them: responses and articles that
# came and went around longer-lived ones. Prints how much the process still holds.
SMALL_BLOCKS_COME_AND_GO = """
import sys
from crawler.memory import give_back_free_memory, return_large_allocations

return_large_allocations()
before = resident_kb()
blocks, kept = [], []
for number in range(20_000):
    blocks.append(bytes(3000))
    if number % 50 == 0:
        kept.append(bytes(3000))
del blocks
if sys.argv[1] == "given back":
    assert give_back_free_memory()
print((resident_kb() - before) / 1024)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_free_heap_pages_between_live_blocks_go_back_to_the_system():
    assert still_held_mb(SMALL_BLOCKS_COME_AND_GO, "given back") < 10
    assert still_held_mb(SMALL_BLOCKS_COME_AND_GO, "kept") > 40  # what the call is for: the same run without it


def test_the_crawl_process_leaves_numpy_and_simplemma_to_the_extraction_workers():
    """numpy holds 10 MB of private memory in a process that imports it, simplemma 4 MB. The
    crawl process (Scrapy, SQLite, the story clustering) compares signatures as bytes and names
    as strings, and has no use for either; the extraction workers make the fingerprints."""
    script = ("import sys, crawler.cli, crawler.crawl, crawler.pipelines, crawler.clustering, spiders.sources; "
              "print(sorted({'numpy', 'simplemma'} & set(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
