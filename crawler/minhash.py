"""MinHash signatures of word shingles, computed with numpy in one pass.

The values are datasketch's (2.x, scheme "affine32", seed 1: SHA-1 of each shingle, its first
4 bytes mixed by the MurmurHash3 finalizer, then 128 affine permutations mod 2**32), which
stored signatures were made with; tests/test_clustering.py checks them against datasketch.
datasketch itself is not used: its import brings scipy (34 MB in every extraction worker, half
a second at start) and it hashes the shingles one call at a time.

Only the extraction workers import this module. The crawl process compares and indexes the
signatures as the bytes they are stored as, and so never loads numpy (10 MB there).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from functools import lru_cache

import numpy as np

from crawler.fingerprints import MINHASH_SEED, NUM_PERM

_DIGEST_WORDS = hashlib.sha1().digest_size // 4  # a SHA-1 digest is five 32-bit words


def minhash(shingles: Iterable[str]) -> bytes:
    """The signature: 128 values of 32 bits, little-endian, 512 bytes (the stored format)."""
    sha1 = hashlib.sha1
    # whole digests, then every fifth 32-bit word: their first 4 bytes, without a slice per shingle
    digests = b"".join([sha1(shingle.encode()).digest() for shingle in shingles])
    hashes = np.frombuffer(digests, dtype="<u4")[:: _DIGEST_WORDS]
    if not hashes.size:
        return b"\xff" * (4 * NUM_PERM)  # an empty set: every value at its maximum
    a, b = _permutations()
    with np.errstate(over="ignore"):  # uint32 arithmetic wraps: that is the modulo 2**32
        permuted = np.multiply.outer(_fmix32(hashes), a)
        permuted += b  # in place: one shingles x 128 array, not two
        return permuted.min(axis=0).astype("<u4").tobytes()


def _fmix32(values: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finalizer, element-wise (a bijection that spreads every input bit)."""
    values = values ^ (values >> np.uint32(16))
    values = values * np.uint32(0x85EBCA6B)
    values = values ^ (values >> np.uint32(13))
    values = values * np.uint32(0xC2B2AE35)
    return values ^ (values >> np.uint32(16))


@lru_cache(maxsize=1)
def _permutations() -> tuple[np.ndarray, np.ndarray]:
    """The affine permutations h -> a*h + b (a odd), drawn as datasketch draws them for seed 1."""
    generator = np.random.RandomState(MINHASH_SEED)
    a = generator.randint(0, 1 << 31, NUM_PERM, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
    b = generator.randint(0, 1 << 32, NUM_PERM, dtype=np.uint32)
    return a, b
