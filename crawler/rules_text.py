"""What "the same word" means to the rules: folded tokens, term patterns and a fast term index.

Rule terms match words after case folding and accent stripping ("Défense" = "defense",
"ё" = "е"), so a rule file never has to spell accents; inflection is handled by prefix
wildcards ("ракет*" matches every case of "ракета"), which keeps matching far below a
millisecond per article, where lemmatising every token would not.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

# Letters and digits are separate tokens, so "Shahed-136", "Shahed136" and "Shahed 136"
# all read as "shahed" "136", and "152mm" as "152" "mm".
TOKEN_RE = re.compile(r"[^\W\d_]+|\d+")
TERM_TOKEN_RE = re.compile(r"[^\W\d_]+\*?|\d+\*?|[#*]")

# Token patterns, as tuples so compiled rule sets pickle cheaply.
WORD, PREFIX, NUMBER, ANY = "w", "p", "n", "a"


@lru_cache(maxsize=262_144)
def fold(word: str) -> str:
    """Lower-case and strip diacritics; cached because news vocabulary repeats."""
    lowered = word.lower()
    if lowered.isascii():
        return lowered
    decomposed = unicodedata.normalize("NFKD", lowered)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


WORD_RE = re.compile(r"\w+")
# Words plus sentence ends and paragraph breaks, so one pass gives tokens and their sentence
# and paragraph numbers.
WORD_OR_END_RE = re.compile(r"\w+|[.!?;]+(?=[\"'»”’)\]]*\s)|\n[^\S\n]*\n\s*|\n")


def _lowered(text: str) -> str:
    low = text.lower()
    return low if len(low) == len(text) else text  # "İ" lower-cases to two characters


def words_of(text: str) -> tuple[list[str], list[int], list[int]]:
    """Folded tokens of `text`, with the sentence and the paragraph number of each (no offsets)."""
    words: list[str] = []
    sids: list[int] = []
    pids: list[int] = []
    sentence = paragraph = 0
    after_end = False
    for word in WORD_OR_END_RE.findall(_lowered(text)):
        if word.isalpha() or word.isdigit():
            words.append(word if word.isascii() else fold(word))
        elif not word[0].isalnum() and word[0] != "_":
            if word.count("\n") > 1:
                paragraph += 1
            if not after_end:
                sentence += 1
                after_end = True
            continue
        else:
            parts = [fold(part) for part in TOKEN_RE.findall(word)]
            words.extend(parts)
            sids.extend([sentence] * (len(parts) - 1))
            pids.extend([paragraph] * (len(parts) - 1))
        sids.append(sentence)
        pids.append(paragraph)
        after_end = False
    return words, sids, pids


def spans_of(text: str) -> tuple[list[int], list[int]]:
    """Character start and end offsets of the tokens `words_of(text)` returns, in the same order."""
    starts: list[int] = []
    ends: list[int] = []
    for m in WORD_RE.finditer(_lowered(text)):
        word = m.group()
        if word.isalpha() or word.isdigit():
            starts.append(m.start())
            ends.append(m.end())
        else:
            base = m.start()
            for part in TOKEN_RE.finditer(word):
                starts.append(base + part.start())
                ends.append(base + part.end())
    return starts, ends


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


class TermIndex:
    """All terms of a rule set, indexed by their first token for one pass over an article."""

    def __init__(self) -> None:
        self.exact: dict[str, list[tuple]] = {}
        self.prefixes: dict[int, dict[str, list[tuple]]] = {}
        self.numeric: list[tuple] = []
        self._cache: dict[str, tuple] = {}

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

    def __getstate__(self) -> dict:
        return {"exact": self.exact, "prefixes": self.prefixes, "numeric": self.numeric}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._cache = {}

    def _candidates(self, word: str) -> tuple:
        """(one-word payloads, longer terms by their exact second word, other longer terms), cached."""
        found = self._cache.get(word)
        if found is None:
            entries: list[tuple] = list(self.exact.get(word, ()))
            size = len(word)
            for length, table in self.prefixes.items():
                if length <= size:
                    entries.extend(table.get(word[:length], ()))
            if word.isdigit():
                entries.extend(self.numeric)
            singles = tuple(payload for pattern, payload in entries if len(pattern) == 1)
            by_second: dict[str, list[tuple]] = {}
            others = []
            for pattern, payload in entries:
                if len(pattern) > 1:
                    if pattern[1][0] == WORD:
                        by_second.setdefault(pattern[1][1], []).append((pattern, payload))
                    else:
                        others.append((pattern, payload))
            found = (singles, by_second, tuple(others)) if entries else ()
            if len(self._cache) > 200_000:
                self._cache.clear()
            self._cache[word] = found
        return found

    def scan(self, words: list[str]) -> list[tuple[int, int, tuple]]:
        """Every (first token, end token, payload) where a term matches."""
        cache = self._cache
        by_word = {}
        for w in set(words):
            c = cache.get(w)
            if c is None:
                c = self._candidates(w)
            if c:
                by_word[w] = c
        found: list[tuple[int, int, tuple]] = []
        if not by_word:
            return found
        n = len(words)
        for i in [i for i, w in enumerate(words) if w in by_word]:
            singles, by_second, others = by_word[words[i]]
            for payload in singles:
                found.append((i, i + 1, payload))
            if i + 1 < n:
                for pattern, payload in by_second.get(words[i + 1], ()):
                    end = i + len(pattern)
                    if end <= n and (end == i + 2 or _rest_matches(pattern, words, i)):
                        found.append((i, end, payload))
                for pattern, payload in others:
                    end = i + len(pattern)
                    if end <= n and _rest_matches(pattern, words, i):
                        found.append((i, end, payload))
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
