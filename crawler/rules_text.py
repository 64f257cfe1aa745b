"""What "the same word" means to the rules: folded tokens, term patterns and a fast term index.

Rule terms match words after case folding and accent stripping ("Défense" = "defense",
"ё" = "е"), so a rule file never has to spell accents; inflection is handled by prefix
wildcards ("ракет*" matches every case of "ракета"), which keeps matching far below a
millisecond per article, where lemmatising every token would not.
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_right
from functools import lru_cache
from itertools import accumulate, chain, compress, count, repeat
from operator import itemgetter, sub

# Letters and digits are separate tokens, so "Shahed-136", "Shahed136" and "Shahed 136"
# all read as "shahed" "136", and "152mm" as "152" "mm".
TOKEN_RE = re.compile(r"[^\W\d_]+|\d+")
TERM_TOKEN_RE = re.compile(r"[^\W\d_]+\*?|\d+\*?|[#*]")

# Token patterns, as tuples so compiled rule sets pickle cheaply.
WORD, PREFIX, NUMBER, ANY = "w", "p", "n", "a"


@lru_cache(maxsize=32_768)  # about 200 bytes a word: 6.5 MB at most in each worker (bench/vocabulary.py)
def fold(word: str) -> str:
    """Lower-case and strip diacritics; cached because news vocabulary repeats."""
    lowered = word.lower()
    if lowered.isascii():
        return lowered
    decomposed = unicodedata.normalize("NFKD", lowered)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


WORD_RE = re.compile(r"\w+")
# A whitespace-separated chunk that ends a sentence: ". ", "?! ", ".» ", ".) ". Lines end sentences
# too, and a blank line ends a paragraph. Splitting on whitespace and caching what each distinct
# chunk holds keeps the per-token work in C: news vocabulary (and its punctuation) repeats.
SENTENCE_END_RE = re.compile(r"[.!?;][\"'»”’)\]]*$")
# Distinct words remembered by a term index. News in several languages brings 100,000 distinct
# words in a few thousand articles; after a clear, the common ones come back at once. Twice these
# limits cost each worker 16 MB more on bench/vocabulary.py, for no CPU its noise could show; the crawl
# benchmark's 181 pages hold 28,000 distinct chunks, which fit.
_CACHE_LIMIT = 32_768
_CHUNK_CACHE_LIMIT = 40_000  # distinct chunks remembered (about 270 bytes each)


def _lowered(text: str) -> str:
    """Lower-cased `text` with the same length, so offsets found in it hold in `text`."""
    low = text.lower()
    return low if len(low) == len(text) else text.replace("İ", "I").lower()  # "İ" lowers to two characters


def _tokens_of_chunk(chunk: str) -> tuple[str, ...]:
    """Folded tokens of one lower-cased chunk: a word of letters or of digits is one token, and
    mixed ones ("shahed136", "foo_bar") split into letter runs and digit runs."""
    tokens: list[str] = []
    for word in WORD_RE.findall(chunk):
        tokens.extend((word,) if word.isalpha() or word.isdigit() else TOKEN_RE.findall(word))
    return tuple(tokens if chunk.isascii() else map(fold, tokens))


_PLAIN, _SENTENCE_END, _NEWLINE = 0, 1, 2  # what a chunk does besides holding tokens
_NEWLINE_MARK = "\x00"  # stands for a newline once the text is split on whitespace


class _ChunkCache(dict):
    """chunk -> (its tokens, _PLAIN / _SENTENCE_END / _NEWLINE, how many tokens); bounded, filled on first sight."""

    def __missing__(self, chunk: str) -> tuple[tuple[str, ...], int, int]:
        if len(self) > _CHUNK_CACHE_LIMIT:
            self.clear()
        if chunk == _NEWLINE_MARK:
            kind = _NEWLINE
        else:
            kind = _SENTENCE_END if SENTENCE_END_RE.search(chunk) else _PLAIN
        tokens = _tokens_of_chunk(chunk)
        found = self[chunk] = (tokens, kind, len(tokens))
        return found


_CHUNKS = _ChunkCache()
_TOKENS_OF, _KIND_OF, _COUNT_OF = itemgetter(0), itemgetter(1), itemgetter(2)


def _numbering(starts: list[int], n: int) -> list[int]:
    """For n tokens, how many of the (sorted) `starts` are at or before each one."""
    lengths = map(sub, starts + [n], [0] + starts)
    return list(chain.from_iterable(map(repeat, count(), lengths)))


class Tokens:
    """Folded tokens of a text with their sentence and paragraph numbers; character offsets are
    worked out per line, only for the lines a flag needs.

    A newline ends a sentence, a blank line a paragraph; sentence ends in a row count once."""

    __slots__ = ("text", "lowered", "words", "_infos", "_sids", "_pids", "_breaks", "_newlines", "_starts", "_ends")

    def __init__(self, text: str) -> None:
        self.text = text
        self.lowered = low = _lowered(text)
        if _NEWLINE_MARK in low:
            low = low.replace(_NEWLINE_MARK, "\x01")  # neither a word, a space nor an end: reads the same
        # Whitespace-separated chunks, each newline one mark chunk; everything per chunk is cached,
        # so the work per token stays in C.
        infos = list(map(_CHUNKS.__getitem__, low.replace("\n", " " + _NEWLINE_MARK + " ").split()))
        self.words = list(chain.from_iterable(map(_TOKENS_OF, infos)))
        self._infos: list[tuple[tuple[str, ...], int, int]] | None = infos
        self._sids: list[int] = []
        self._pids: list[int] = []
        self._breaks: list[int] = []
        self._newlines: list[int] | None = None
        self._starts: list[int | None] = [None] * len(self.words)
        self._ends: list[int | None] = [None] * len(self.words)

    def _number(self) -> None:
        """Sentence and paragraph numbers, worked out only for articles a rule may flag."""
        infos, words = self._infos, self.words
        assert infos is not None
        self._infos = None
        upto = list(accumulate(map(_COUNT_OF, infos)))  # tokens up to each chunk, inclusive
        kinds = list(map(_KIND_OF, infos))
        # A sentence starts at the first boundary after a token: boundaries in a row count once.
        sentence_starts = list(dict.fromkeys(map(upto.__getitem__, compress(count(), kinds))))
        newlines = [j for j in compress(count(), kinds) if kinds[j] == _NEWLINE]
        self._breaks = list(map(upto.__getitem__, newlines))  # the first token after each newline
        seen = set(newlines)
        # A paragraph starts at the second newline of a run of blank space.
        paragraph_starts = [upto[j] for j in newlines if j - 1 in seen and j - 2 not in seen]
        self._sids = _numbering(sentence_starts, len(words))
        self._pids = _numbering(paragraph_starts, len(words))

    @property
    def sids(self) -> list[int]:
        """The sentence number of each token."""
        if self._infos is not None:
            self._number()
        return self._sids

    @property
    def pids(self) -> list[int]:
        """The paragraph number of each token."""
        if self._infos is not None:
            self._number()
        return self._pids

    def _locate(self, i: int) -> None:
        """Fill the offsets of every token on the line of token i."""
        if self._infos is not None:
            self._number()
        if self._newlines is None:
            self._newlines = [m.start() for m in re.finditer("\n", self.lowered)]
        k = bisect_right(self._breaks, i)  # newlines before token i
        base = self._newlines[k - 1] + 1 if k else 0
        line_end = self._newlines[k] if k < len(self._newlines) else len(self.lowered)
        j = self._breaks[k - 1] if k else 0
        starts, ends = self._starts, self._ends
        found = list(TOKEN_RE.finditer(self.lowered, base, line_end))
        if len(found) == (self._breaks[k] if k < len(self._breaks) else len(starts)) - j:
            # TOKEN_RE splits only more finely ("1²" is one token, two for TOKEN_RE): same count, same tokens
            starts[j : j + len(found)] = map(re.Match.start, found)
            ends[j : j + len(found)] = map(re.Match.end, found)
            return
        for m in WORD_RE.finditer(self.lowered, base, line_end):
            word = m.group()
            if word.isalpha() or word.isdigit():
                starts[j], ends[j] = m.start(), m.end()
                j += 1
            else:
                for part in TOKEN_RE.finditer(word):
                    starts[j], ends[j] = m.start() + part.start(), m.start() + part.end()
                    j += 1

    def start(self, i: int) -> int:
        """Character offset where token i starts in `text`."""
        found = self._starts[i]
        if found is None:
            self._locate(i)
            found = self._starts[i]
        return found  # type: ignore[return-value]

    def end(self, i: int) -> int:
        """Character offset where token i ends in `text`."""
        found = self._ends[i]
        if found is None:
            self._locate(i)
            found = self._ends[i]
        return found  # type: ignore[return-value]


def words_of(text: str) -> tuple[list[str], list[int], list[int]]:
    """Folded tokens of `text`, with the sentence and the paragraph number of each (no offsets)."""
    tokens = Tokens(text)
    return tokens.words, tokens.sids, tokens.pids


def spans_of(text: str) -> tuple[list[int], list[int]]:
    """Character start and end offsets of the tokens `words_of(text)` returns, in the same order."""
    tokens = Tokens(text)
    n = len(tokens.words)
    return [tokens.start(i) for i in range(n)], [tokens.end(i) for i in range(n)]


def parse_term(term: str) -> tuple[tuple[str, str], ...] | str:
    """Compile a term ("drone*", "kn-23", "# mm shell*", "arms race") or return what is wrong.

    `word*` matches any word starting with `word`; `#` any number; `*` alone any one word.
    """
    parts = TERM_TOKEN_RE.findall(fold(term))
    if not parts:
        return f"term {term!r} has no letters or digits"
    compiled: list[tuple[str, str]] = []
    for part in parts:
        if part == "*":
            compiled.append((ANY, ""))
        elif part == "#":
            compiled.append((NUMBER, ""))
        elif part.endswith("*"):
            if not compiled and len(part) < 4 and not part[:-1].isdigit():
                return f"wildcard {part!r} in term {term!r} is too short to start a term (at least 3 letters before *)"
            compiled.append((PREFIX, part[:-1]))
        else:
            compiled.append((WORD, part))
    if compiled[0][0] == ANY:
        return f"term {term!r} cannot start with a lone *"
    return tuple(compiled)


class _CandidateCache(dict):
    """word -> what terms may start at it, or () when none; bounded, filled on first sight."""

    def __init__(self, index: "TermIndex") -> None:
        super().__init__()
        self.index = index

    def __missing__(self, word: str) -> tuple:
        if len(self) > _CACHE_LIMIT:
            self.clear()
        found = self[word] = self.index._candidates(word)
        return found


class TermIndex:
    """All terms of a rule set, indexed by their first token for one pass over an article."""

    def __init__(self) -> None:
        self.exact: dict[str, list[tuple]] = {}
        self.prefixes: dict[int, dict[str, list[tuple]]] = {}
        self.numeric: list[tuple] = []
        self._cache = _CandidateCache(self)

    def add(self, pattern: tuple[tuple[str, str], ...], payload: tuple) -> None:
        """Register a compiled term; `payload` is returned with every occurrence."""
        entry = (pattern, payload)
        kind, value = pattern[0]
        if kind == WORD:
            self.exact.setdefault(value, []).append(entry)
        elif kind == PREFIX:
            self.prefixes.setdefault(len(value), {}).setdefault(value, []).append(entry)
        else:
            self.numeric.append(entry)
        self._cache.clear()

    def __getstate__(self) -> dict:
        return {"exact": self.exact, "prefixes": self.prefixes, "numeric": self.numeric}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._cache = _CandidateCache(self)

    def _candidates(self, word: str) -> tuple:
        """(one-word payloads, longer terms by their exact second word or None, other longer terms or None),
        or () when no term starts with `word`."""
        entries: list[tuple] = list(self.exact.get(word, ()))
        size = len(word)
        for length, table in self.prefixes.items():
            if length <= size:
                entries.extend(table.get(word[:length], ()))
        if word.isdigit():
            entries.extend(self.numeric)
        if not entries:
            return ()
        singles = tuple(payload for pattern, payload in entries if len(pattern) == 1)
        by_second: dict[str, list[tuple]] = {}
        others = []
        for pattern, payload in entries:
            if len(pattern) > 1:
                if pattern[1][0] == WORD:
                    by_second.setdefault(pattern[1][1], []).append((pattern, payload))
                else:
                    others.append((pattern, payload))
        return (singles, by_second or None, tuple(others) or None)

    def scan(self, words: list[str]) -> list[tuple[int, int, tuple]]:
        """Every (first token, end token, payload) where a term matches, in text order."""
        candidates = list(map(self._cache.__getitem__, words))
        found: list[tuple[int, int, tuple]] = []
        append = found.append
        n = len(words)
        for i in compress(range(n), candidates):
            singles, by_second, others = candidates[i]
            for payload in singles:
                append((i, i + 1, payload))
            if i + 1 < n:
                if by_second is not None:
                    for pattern, payload in by_second.get(words[i + 1], ()):
                        end = i + len(pattern)
                        if end <= n and (end == i + 2 or _rest_matches(pattern, words, i)):
                            append((i, end, payload))
                if others is not None:
                    for pattern, payload in others:
                        end = i + len(pattern)
                        if end == i + 2 and pattern[1][0] == PREFIX:  # the common case, inline
                            if words[i + 1].startswith(pattern[1][1]):
                                append((i, end, payload))
                        elif end <= n and _rest_matches(pattern, words, i):
                            append((i, end, payload))
        return found


def _rest_matches(pattern: tuple[tuple[str, str], ...], words: list[str], i: int) -> bool:
    for offset in range(1, len(pattern)):
        kind, value = pattern[offset]
        word = words[i + offset]
        if kind == WORD:
            if word != value:
                return False
        elif kind == PREFIX:
            if not word.startswith(value):
                return False
        elif kind == NUMBER:
            if not word.isdigit():
                return False
    return True
