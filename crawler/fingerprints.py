"""Fingerprints of an article for story clustering: a MinHash of its text and the names and
numbers that survive translation.

Two kinds of evidence, for two kinds of sameness:
- copies and light edits share most word 3-shingles, so a MinHash (datasketch's scheme)
  estimates their Jaccard similarity, and LSH band keys find them through an index;
- translations share almost no words, but keep weapon designations (Shahed-136, KN-23),
  proper names (Shoigu, Pyongyang) and figures (152, "1 million"). Those are normalised
  across scripts and number formats so that "1 млн" in Russian meets "un million" in French.
"""

from __future__ import annotations

import hashlib
import operator
import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from functools import lru_cache


NUM_PERM = 128
BANDS = 32  # 32 bands of 4 rows: pairs with Jaccard ~0.4 and above usually share a band
ROWS = NUM_PERM // BANDS
SHINGLE = 3
SCHEME = "affine32"  # datasketch 2.x: 32-bit hash values, stored as 4 bytes each
MINHASH_SEED = 1  # datasketch's default

# Cyrillic -> Latin, close to the spellings Latin-script outlets use ("Шойгу" -> "shoigu").
_CYRILLIC = {
    "а": "a", "б": "b", "в": "v", "г": "g", "ґ": "g", "д": "d", "е": "e", "ё": "e", "є": "ie",
    "ж": "zh", "з": "z", "и": "i", "і": "i", "ї": "i", "й": "i", "к": "k", "л": "l", "м": "m",
    "н": "n", "о": "o", "п": "p", "р": "r", "с": "s", "т": "t", "у": "u", "ф": "f", "х": "kh",
    "ц": "ts", "ч": "ch", "ш": "sh", "щ": "shch", "ъ": "", "ы": "y", "ь": "", "э": "e",
    "ю": "iu", "я": "ia", "'": "", "’": "",
}

_WORD = re.compile(r"[^\W_]+(?:[-‑][^\W_]+)*", re.UNICODE)
# A designation mixes letters and digits: KN-23, Shahed-136, S-400, Fath-360, K2, TB2, Su-35.
_DESIGNATION = re.compile(r"^(?=.*\d)(?=.*[^\W\d_])[^\W_]+(?:-[^\W_]+)*$", re.UNICODE)
_NUMBER = re.compile(
    r"(?<![\w.,\-‑])(\d{1,3}(?:[ .,\u00a0\u202f]\d{3})+|\d+)(?:[.,](\d+))?(?:\s?(%))?"
    r"(?:\s+([^\W\d_]+\.?))?",
    re.UNICODE,
)
_DIGITS = re.compile(r"\d+")
# Words after a figure that scale it, in the languages armswatch reads.
_SCALE = {
    "thousand": 1e3, "mille": 1e3, "mila": 1e3, "tausend": 1e3, "mil": 1e3, "тысяч": 1e3, "тис": 1e3,
    "тыс": 1e3, "тисяч": 1e3,
    "million": 1e6, "millions": 1e6, "millionen": 1e6, "mio": 1e6, "milione": 1e6, "milioni": 1e6,
    "millón": 1e6, "millones": 1e6, "millon": 1e6, "миллион": 1e6, "миллиона": 1e6, "миллионов": 1e6,
    "млн": 1e6, "мільйон": 1e6, "мільйона": 1e6, "мільйонів": 1e6, "mln": 1e6, "m": 1e6,
    "billion": 1e9, "billions": 1e9, "milliarde": 1e9, "milliarden": 1e9, "milliard": 1e9,
    "milliards": 1e9, "miliardo": 1e9, "miliardi": 1e9, "mrd": 1e9, "bn": 1e9,
    "миллиард": 1e9, "миллиарда": 1e9, "млрд": 1e9, "мільярд": 1e9, "мільярда": 1e9,
}
_PERCENT_WORDS = ("percent", "per cent", "prozent", "pourcent", "por ciento", "per cento", "процент", "відсот")
_WORD_NUMBERS = {"un": 1, "une": 1, "uno": 1, "una": 1, "one": 1, "a": 1, "eine": 1, "ein": 1, "один": 1, "одна": 1}
# "one million", "un milione": a number word before a scale word of a million or more
_WORD_TIMES_SCALE = re.compile(
    r"(?<!\w)(" + "|".join(sorted(_WORD_NUMBERS, key=len, reverse=True)) + r")\s+("
    + "|".join(sorted((word for word, scale in _SCALE.items() if scale >= 1e6), key=len, reverse=True)) + r")\b"
)


@lru_cache(maxsize=8_192)  # names and designations repeat across the news of a day
def fold(text: str) -> str:
    """Lower-case, strip accents, and write Cyrillic in Latin letters."""
    text = unicodedata.normalize("NFKD", text.lower())
    text = "".join(c for c in text if not unicodedata.combining(c))
    text = "".join(_CYRILLIC.get(c, c) for c in text)
    # Spelling variants that differ only by transliteration habit: "shoygu"/"shoigu".
    return text.replace("y", "i").replace("kh", "h").replace("j", "i")


def words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text or "")]


def _tokens(text: str) -> list[tuple[int, str]]:
    """The words of the text with where each starts: one regex pass that designations, names
    and shingles all read (three passes over the article were an eighth of its fingerprint)."""
    return [(m.start(), m.group()) for m in _WORD.finditer(text)]


def shingles(text: str, size: int = SHINGLE) -> set[str]:
    return _shingles(words(text), size)


def _shingles(tokens: list[str], size: int = SHINGLE) -> set[str]:
    if len(tokens) < size:
        return {" ".join(tokens)} if tokens else set()
    if size == 3:  # the common case, without a slice per shingle
        return {f"{a} {b} {c}" for a, b, c in zip(tokens, tokens[1:], tokens[2:])}
    return {" ".join(tokens[i : i + size]) for i in range(len(tokens) - size + 1)}


def text_signature(text: str) -> bytes:
    """The MinHash signature of the text's word 3-shingles: 128 32-bit values, little-endian.

    Made in the extraction workers (crawler.minhash, imported here and only when called: it
    loads numpy, which the crawl process, comparing signatures as bytes, does without)."""
    return _signature(words(text))


def _signature(lowered_words: list[str]) -> bytes:
    from crawler.minhash import minhash

    return minhash(_shingles(lowered_words))


def signature_similarity(a: bytes, b: bytes) -> float:
    """Estimated Jaccard similarity: the share of equal MinHash values (as datasketch's
    MinHash.jaccard computes it, without rebuilding MinHash objects for every stored candidate)."""
    left, right = memoryview(a).cast("I"), memoryview(b).cast("I")
    return sum(map(operator.eq, left, right)) / len(left)


def _key(*parts: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(b"\x1f".join(parts), digest_size=8).digest(), "big", signed=True)


def band_keys(signature: bytes) -> list[int]:
    """One 64-bit key per LSH band: two articles sharing a key are near-duplicate candidates."""
    width = 4 * ROWS  # bytes of a band's values
    return [_key(b"band", bytes([band]), signature[band * width : (band + 1) * width]) for band in range(BANDS)]


def evidence_key(kind: str, value: str) -> int:
    """Index key for a designation, name or number (candidates across languages)."""
    return _key(kind.encode(), value.encode("utf-8"))


def title_similarity(a: str | None, b: str | None) -> float:
    """Character-level similarity of two folded titles, 0..1."""
    if not a or not b:
        return 0.0
    return SequenceMatcher(None, " ".join(words(fold(a))), " ".join(words(fold(b))), autojunk=False).ratio()


def _number_value(whole: str, decimals: str | None) -> float | None:
    digits = whole if whole.isdigit() else re.sub(r"[ .,\u00a0\u202f]", "", whole)  # most figures: no separator
    try:
        value = float(digits)
        if decimals:
            value += float("0." + decimals)
    except ValueError:
        return None
    return value


def numbers(text: str) -> set[str]:
    """Figures worth comparing across languages, normalised ("1,5 Millionen" -> "1500000").

    Years (1900-2100), days of the month and single digits say little about the event and are
    left out; percentages keep a "%" so "20%" never meets "20 drones".
    """
    found: set[str] = set()
    text = text or ""
    for m in _figures(text):
        whole, decimals, percent, after = m.groups()
        if decimals and len(decimals) == 3 and not re.search(r"[ .,\u00a0\u202f]", whole):
            whole, decimals = whole + decimals, None  # "300.000" / "300,000": a thousands separator
        value = _number_value(whole, decimals)
        if value is None:
            continue
        if not percent and (after or "").lower().startswith(_PERCENT_WORDS):
            percent = "%"
        scale = _SCALE.get((after or "").lower().rstrip("."), 1.0) if not percent else 1.0
        if scale == 1.0 and not percent and (value < 10 or (1900 <= value <= 2100 and not decimals)):
            continue
        if scale == 1.0 and not percent and _looks_like_date(text, m.start(), m.end(1)):
            continue
        total = value * scale
        shown = str(int(total)) if total == int(total) else f"{total:g}"
        found.add(shown + "%" if percent else shown)
    for m in _WORD_TIMES_SCALE.finditer(text.lower()):
        found.add(f"{int(_WORD_NUMBERS[m.group(1)] * _SCALE[m.group(2)])}")
    return found


def _figures(text: str) -> Iterator[re.Match[str]]:
    """`_NUMBER.finditer(text)`, tried only where a run of digits starts.

    A figure starts a run of digits (its look-behind refuses a digit before it), so those are
    the only places worth trying; letting the regex try every character was twice as slow."""
    end = 0
    for run in _DIGITS.finditer(text):
        if run.start() < end:
            continue
        m = _NUMBER.match(text, run.start())
        if m:
            end = m.end()
            yield m


_MONTHS = re.compile(
    r"^\s*(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec|janv|févr|mars|avr|mai|juin|juil|août|sept|"
    r"gen|mag|giu|lug|ago|set|ott|dic|enero|feb|marzo|abril|mayo|junio|julio|agosto|sept|octubre|"
    r"noviembre|diciembre|januar|februar|märz|april|juni|juli|oktober|dezember|січ|лют|бер|квіт|трав|"
    r"черв|лип|серп|вер|жовт|лист|груд|янв|фев|мар|апр|мая|июн|июл|авг|сен|окт|ноя|дек)",
    re.IGNORECASE,
)


def _looks_like_date(text: str, start: int, end: int) -> bool:
    """"12 September", "September 12": a day of the month, not a quantity."""
    after = text[end : end + 12]
    before = text[max(0, start - 12) : start]
    if _MONTHS.match(after) or _MONTHS.match(after.lstrip(". ")):
        return True
    return bool(re.search(r"(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)\w*\.?\s*$", before, re.IGNORECASE))


def designations(text: str) -> set[str]:
    """Weapon and system designations: tokens mixing letters and digits, folded ("Шахед-136" -> "shahed-136")."""
    return _designations(_WORD.findall(text or ""))


def _designations(tokens: Iterable[str]) -> set[str]:
    found = set()
    for token in tokens:
        if token.isalpha():
            continue  # letters only: no designation (the common case, tested first)
        token = token.replace("‑", "-")
        if _DESIGNATION.match(token) and not token.isdigit() and len(token) <= 20:
            folded = re.sub(r"(?<=\d)s$", "", fold(token))  # "MiG-29s" -> "mig-29"
            if folded.replace("-", "").isdigit():
                continue  # "1970s"
            if re.fullmatch(r"\d+(st|nd|rd|th|er|e|eme|ème|º|°|-?[a-zа-я]{1,3})", folded):
                continue  # "21st", "3e", "10-й": ordinals, not designations
            found.add(folded)
    return found


_OPENERS = " \t\u00a0«»\"“”„'‘’([-–—"


def names(text: str, stop: frozenset[str] = frozenset(), language: str | None = None) -> set[str]:
    """Capitalised words inside sentences (not sentence starts), as spelling-tolerant keys:
    candidates for people and places that keep their spelling across languages. Short words,
    `stop` words, compounds like "Iranian-designed" and, when `language` is given, words of
    its dictionary (German nouns) are skipped."""
    text = text or ""
    return _names(text, _tokens(text), stop, language)


def _names(text: str, tokens: list[tuple[int, str]], stop: frozenset[str], language: str | None) -> set[str]:
    candidates = set()  # a name recurs in an article: what follows is decided once per word
    for start, token in tokens:
        if not token[:1].isupper() or len(token) < 4:
            continue
        before = text[max(0, start - 6) : start].rstrip(_OPENERS)
        if start == 0 or not before or before[-1] in ".!?:\n" or text[start - 1] == "\n":
            continue  # a sentence starts with a capital whatever the word is
        candidates.add(token)
    found = set()
    for token in candidates:
        if not token.isalpha() and any(c.isdigit() for c in token):
            continue
        folded = fold(token)
        parts = token.split("-")
        if folded in stop or (len(parts) > 1 and parts[-1].islower()):
            continue  # "Iranian-designed", "Chinese-made": adjectives, not names
        if any(_dictionary_word(part, language) for part in parts):
            continue  # "Vertrag", "Shahed-Drohnen": words of the language, not names
        found.add(name_key(folded))
    return found


@lru_cache(maxsize=8_192)  # the same names, day after day
def _dictionary_word(token: str, language: str | None) -> bool:
    """Whether simplemma knows the word, read from its compressed dictionary as it ships.

    Its default lookup unpacks the whole dictionary into a dict in each extraction worker:
    about 100 MB for German, 120 for Russian. The low-memory one keeps the packed stream and an
    index (15 and 20 MB); a lookup costs some 13 microseconds more, and names repeat."""
    if not language:
        return False
    import simplemma  # here: the crawl process, which only compares fingerprints, never loads it (4 MB)

    try:
        return simplemma.is_known(token, lang=language, low_memory=True)
    except (ValueError, KeyError):  # a language simplemma has no dictionary for
        return False


_SOUNDS = (("tsch", "sh"), ("sch", "sh"), ("ch", "sh"), ("ou", "u"), ("c", "k"), ("q", "k"), ("z", "s"),
           ("w", "v"), ("ph", "f"), ("x", "ks"))


@lru_cache(maxsize=8_192)
def name_key(folded: str) -> str:
    """A spelling-tolerant key for a folded name: "Choïgou", "Shoigu" and "Шойгу" meet."""
    for old, new in _SOUNDS:
        folded = folded.replace(old, new)
    return re.sub(r"(.)\1+", r"\1", folded)


def names_match(a: str, b: str) -> bool:
    """Same name up to an inflected ending ("pistorius" / "pistoriusa", "selenski" / "selenskogo")."""
    if a == b:
        return True
    common = 0
    for x, y in zip(a, b):
        if x != y:
            break
        common += 1
    return common >= 5 and common >= min(len(a), len(b)) - 1


def shared_names(a: frozenset[str], b: frozenset[str]) -> list[str]:
    """Names of `a` that have a match in `b` ("x~y" when spelt differently), each used once."""
    shared = sorted(a & b)
    by_prefix: dict[str, list[str]] = {}
    for name in sorted(b - a):
        by_prefix.setdefault(name[:5], []).append(name)
    for name in sorted(a - b):
        bucket = by_prefix.get(name[:5], [])
        hit = next((other for other in bucket if names_match(name, other)), None)
        if hit is not None:
            bucket.remove(hit)
            shared.append(f"{name}~{hit}")
    return shared


@dataclass(frozen=True)
class Fingerprint:
    """What the clustering compares, computed once per article and stored with it."""

    signature: bytes  # MinHash values of the text, as stored (crawler.minhash)
    title: str
    designations: frozenset[str] = field(default_factory=frozenset)
    numbers: frozenset[str] = field(default_factory=frozenset)
    names: frozenset[str] = field(default_factory=frozenset)
    # index keys, filled where the fingerprint is computed (an extraction worker), so that the
    # process writing to SQLite does not hash them again; empty on fingerprints read back
    bands: tuple[int, ...] = ()
    evidence: tuple[int, ...] = ()

    def band_keys(self) -> list[int]:
        return list(self.bands) or band_keys(self.signature)

    def evidence_keys(self) -> list[int]:
        return list(self.evidence) or evidence_keys(self.designations, self.numbers, self.names)


def evidence_keys(designations: frozenset[str], numbers: frozenset[str], names: frozenset[str]) -> list[int]:
    """Index keys of the cross-language evidence: names by their first five letters."""
    return (
        [evidence_key("d", d) for d in sorted(designations)]
        + [evidence_key("n", n) for n in sorted(numbers)]
        + [evidence_key("p", p[:5]) for p in sorted(names)]
    )


def fingerprint(
    title: str | None, text: str | None, stop_names: frozenset[str] = frozenset(), language: str | None = None
) -> Fingerprint:
    body = f"{title or ''}\n\n{text or ''}"
    tokens = _tokens(body)
    # the text's words follow the title's: no word spans the blank line between them
    text_starts = len(title or "") + 2
    signed = [word for start, word in tokens if start >= text_starts] if text else [word for _, word in tokens]
    signature = _signature([word.lower() for word in signed])
    weapons = frozenset(_designations(word for _, word in tokens))
    figures = frozenset(numbers(body))
    people_and_places = frozenset(_names(body, tokens, stop_names, language))
    return Fingerprint(
        signature=signature,
        title=title or "",
        designations=weapons,
        numbers=figures,
        names=people_and_places,
        bands=tuple(band_keys(signature)),
        evidence=tuple(evidence_keys(weapons, figures, people_and_places)),
    )
