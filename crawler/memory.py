"""Give the memory a finished page used back to the system: large blocks at once, the heap's free pages regularly.

glibc serves allocations above a threshold (128 KiB) with their own mapping and returns it when
they are freed, but it raises that threshold to the size of each such block freed, up to 32 MiB.
After the first large page, page bodies, parse buffers and extracted texts all land in the heap,
whose free space is rarely returned: a long crawl keeps its biggest moment. With the threshold
fixed, measured on the crawl benchmark: 8-9 MB less in each extraction worker and 7-9 MB less in
the crawl process, at no CPU cost the benchmark could see.

Smaller blocks (responses, requests, articles waiting for their batch) come and go in the heap,
and freed space between live ones is never returned by itself. `give_back_free_memory()` hands
those free pages back (glibc's malloc_trim); the crawl process calls it every second: 10 MB less
on the crawl benchmark, for about a millisecond a second.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from functools import lru_cache

LOGGER = logging.getLogger(__name__)

LARGE_ALLOCATION_BYTES = 128 * 1024  # glibc's own starting threshold, kept from moving
_M_TRIM_THRESHOLD = -1  # mallopt parameters, from glibc's malloc.h
_M_MMAP_THRESHOLD = -3


@lru_cache(maxsize=1)
def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def return_large_allocations() -> bool:
    """Fix glibc's mapping and trimming thresholds for this process and those it forks.

    False, and nothing changed, where the C library has no mallopt (macOS, some others)."""
    mallopt = getattr(_libc(), "mallopt", None)
    if mallopt is None:
        LOGGER.debug("no mallopt in this C library: allocation thresholds left as they are")
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(_M_MMAP_THRESHOLD, LARGE_ALLOCATION_BYTES)) and bool(
        mallopt(_M_TRIM_THRESHOLD, LARGE_ALLOCATION_BYTES)
    )


def give_back_free_memory() -> bool:
    """Return the free pages inside the C heap to the system; False where there is no malloc_trim."""
    trim = getattr(_libc(), "malloc_trim", None)
    if trim is None:
        return False
    trim.argtypes = [ctypes.c_size_t]
    trim(0)
    return True
