"""An extraction worker's memory on news with a real-sized vocabulary.

    python bench/vocabulary.py [--pages 6000] [--words 300000]

The crawl benchmark repeats 181 real pages, so its workers meet some 10,000 distinct words and
their word caches stay small. Real news in several languages brings 100,000 distinct words and
more in a few thousand articles. This runs the workers' whole path (crawler.processing, warmed
as the forkserver warms it) in one process over generated pages: 700 words each, drawn by
Zipf's law from `--words` distinct pseudo-words, one in nine capitalised, some accented. Every
1,000 pages it prints the process's RSS, CPU per page and the size of each word cache; RSS
should level off once the caches reach their limits.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import crawler.worker_preload  # noqa: E402,F401  (loads and warms the stack, as the forkserver does)
from crawler import fingerprints, rules_text  # noqa: E402
from crawler.items import PageItem  # noqa: E402
from crawler.processing import process_page  # noqa: E402

SYLLABLES = ("ka", "ro", "mi", "tsu", "lev", "an", "dor", "pé", "zhe", "vi", "nal", "sko", "ri", "gu", "tan",
             "ël", "mar", "os", "ti", "bra")
WORDS_PER_PAGE = 700
REPORT_EVERY = 1000  # pages


def pseudo_word(number: int) -> str:
    """Distinct for each number: its syllables spell the number in base 20."""
    rest, parts = number + len(SYLLABLES) ** 2, []
    while rest:
        rest, digit = divmod(rest, len(SYLLABLES))
        parts.append(SYLLABLES[digit])
    word = "".join(parts)
    return word.capitalize() if number % 9 == 0 else word


def page(words: list[str], draw: random.Random) -> bytes:
    # Zipf's law with exponent 1: the word of rank r comes up in proportion to 1/r
    picked = [words[int(len(words) ** draw.random()) - 1] for _ in range(WORDS_PER_PAGE)]
    paragraphs = "".join(f"<p>{' '.join(picked[i : i + 70])}.</p>" for i in range(0, WORDS_PER_PAGE, 70))
    title = " ".join(picked[:8])
    return (f"<html><head><title>{title}</title></head><body><article><h1>{title}</h1>{paragraphs}"
            "</article></body></html>").encode()


def resident_mb() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) // 1024 for line in status if line.startswith("VmRSS:"))


def cache_sizes() -> str:
    sizes = {
        "rules fold": rules_text.fold.cache_info().currsize,
        "chunks": len(rules_text._CHUNKS),
        "names fold": fingerprints.fold.cache_info().currsize,
        "name keys": fingerprints.name_key.cache_info().currsize,
    }
    return ", ".join(f"{name} {size:,}" for name, size in sizes.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=6000)
    parser.add_argument("--words", type=int, default=300_000)
    args = parser.parse_args()
    words = [pseudo_word(number) for number in range(args.words)]
    draw = random.Random(1)
    print(f"vocabulary: {args.words:,} distinct words, Zipf-distributed; RSS at start {resident_mb()} MB")
    started, cpu = time.monotonic(), time.process_time()
    for number in range(1, args.pages + 1):
        url = f"http://127.0.0.1/news/{number}.html"
        process_page(PageItem(url=url, final_url=url, body=page(words, draw), headers={}, status=200, source="bench"))
        if number % REPORT_EVERY == 0:
            ms_per_page = 1000 * (time.process_time() - cpu) / REPORT_EVERY
            print(f"{number:6,} pages  RSS {resident_mb():4d} MB  {ms_per_page:5.2f} ms CPU per page  {cache_sizes()}",
                  flush=True)
            cpu = time.process_time()
    print(f"{args.pages / (time.monotonic() - started):.1f} pages/s")


if __name__ == "__main__":
    main()
