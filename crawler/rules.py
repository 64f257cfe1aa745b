"""Flag articles with the rules of one or more rule files, and explain every flag.

A rule is an expression over named concepts (term lists per language); a flag carries the
rule name, a score, the matched terms with their offsets in `match_text(title, text)`, a
snippet around the strongest match and the supplier / recipient / weapon tags.
"""

from __future__ import annotations

import json
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from crawler.items import Match, MatchedTerm
from crawler.rules_parse import Compiled, Rule, RuleFileError, load_file
from crawler.rules_tags import read_tags
from crawler.rules_text import spans_of, words_of

__all__ = ["RuleFileError", "RuleSet", "format_matches", "load_rules", "match_text"]

RULESETS_DIR = Path(__file__).with_name("rulesets")
SNIPPET_CHARS = 300
MAX_TERMS = 60

Hit = tuple[int, int, frozenset, float]  # (first token, end token, occurrence indexes, score)


def match_text(title: str | None, text: str) -> str:
    """The exact string that MatchedTerm offsets refer to."""
    return f"{title}\n\n{text}" if title else text


class RuleSet:
    """Compiled rules; plain data, so it pickles into ProcessPoolExecutor workers."""

    def __init__(self, compiled: Compiled) -> None:
        self._c = compiled
        self.names: tuple[str, ...] = tuple(r.name for r in compiled.rules)

    def match(self, title: str | None, text: str, language: str | None = None) -> tuple[Match, ...]:
        """Every rule that flags the article. `language` narrows only language-specific concepts."""
        full = match_text(title, text)
        words, sids, pids = words_of(full)
        scanned = self._c.index.scan(words)
        occs = self._occurrences(scanned, language)
        if not occs:
            return ()
        doc = _Doc(full, words, sids, pids, occs)
        results = []
        for rule in self._c.rules:
            truth, hits = _evaluate(rule.expr, doc, self._c)
            if truth:
                found = self._explain(rule, doc, hits, language)
                if found is not None:
                    results.append(found)
        return tuple(results)

    def _marker_occurrences(self, doc: "_Doc", sentences: set[int], language: str | None) -> list[tuple[int, int, int]]:
        """Role markers (from, to, and ...) in the evidence sentences only: they are frequent words."""
        scanned = []
        sids, words = doc.sids, doc.words
        for sentence in sentences:
            lo, hi = bisect_left(sids, sentence), bisect_right(sids, sentence)
            scanned.extend((lo + a, lo + b, payload) for a, b, payload in self._c.tag_index.scan(words[lo:hi]))
        return self._occurrences(scanned, language)

    def _occurrences(self, scanned: list[tuple[int, int, tuple]], language: str | None) -> list[tuple[int, int, int]]:
        concepts = self._c.concepts
        positive: dict[tuple[int, int], int] = {}
        excluded: dict[int, list[tuple[int, int]]] = {}
        for lo, hi, (c, lang, negative) in scanned:
            if negative:
                excluded.setdefault(c, []).append((lo, hi))
                continue
            concept = concepts[c]
            if concept.language_specific and language in concept.languages and lang not in (language, "any"):
                continue
            if positive.get((c, lo), 0) < hi:
                positive[(c, lo)] = hi
        occs = []
        longest: dict[int, tuple[int, int]] = {}
        for (c, lo), hi in sorted(positive.items(), key=lambda kv: (kv[0][1], -kv[1])):
            if any(e_lo < hi and lo < e_hi for e_lo, e_hi in excluded.get(c, ())):
                continue
            last = longest.get(c)
            if last is not None and last[0] <= lo and hi <= last[1]:
                continue  # "Russie" inside "Fédération de Russie"
            longest[c] = (lo, hi)
            occs.append((lo, hi, c))
        occs.sort()
        return occs

    def _explain(self, rule: Rule, doc: "_Doc", hits: list[Hit], language: str | None) -> Match | None:
        """The Match for a rule that holds, or None when its score is below min_score."""
        unique = {(lo, hi, ids): score for lo, hi, ids, score in hits}
        per_sentence: dict[int, float] = {}
        for (lo, _, _), weight in unique.items():
            sentence = doc.sids[lo]
            per_sentence[sentence] = max(per_sentence.get(sentence, 0.0), weight)
        score = round(sum(per_sentence.values()), 2)  # one point per sentence of evidence
        if score < rule.min_score:
            return None
        ids = sorted(set().union(*(k[2] for k in unique)), key=lambda i: doc.occs[i]) if unique else []
        concepts = self._c.concepts
        parties = rule.tagging.parties
        evidence = [doc.occs[i] for i in ids if doc.occs[i][2] not in parties]
        starts, ends = doc.starts, doc.ends
        spans = {i: (starts[doc.occs[i][0]], ends[doc.occs[i][1] - 1]) for i in ids}
        terms = tuple(
            MatchedTerm(concepts[doc.occs[i][2]].name, doc.text[spans[i][0] : spans[i][1]], *spans[i]) for i in ids[:MAX_TERMS]
        )
        snippet, highlights = _snippet(doc, unique, ids, spans)
        markers = self._marker_occurrences(doc, {doc.sids[lo] for lo, _, _ in evidence}, language)
        suppliers, recipients, weapons = read_tags(
            rule.tagging, concepts, sorted(doc.occs + markers), evidence, doc.sids, doc.gap
        )
        return Match(rule.name, score, terms, snippet, highlights, suppliers, recipients, weapons)


class _Doc:
    """One article as the evaluator sees it; character offsets are computed only for a flag."""

    def __init__(self, text: str, words: list[str], sids: list[int], pids: list[int], occs: list) -> None:
        self.text, self.words, self.sids, self.pids, self.occs = text, words, sids, pids, occs
        self._spans: tuple[list[int], list[int]] | None = None
        self.by_concept: dict[int, list[int]] = {}
        for i, (_, _, c) in enumerate(occs):
            self.by_concept.setdefault(c, []).append(i)

    @property
    def starts(self) -> list[int]:
        if self._spans is None:
            self._spans = spans_of(self.text)
        return self._spans[0]

    @property
    def ends(self) -> list[int]:
        if self._spans is None:
            self._spans = spans_of(self.text)
        return self._spans[1]

    def gap(self, i: int) -> str:
        """The text between token i-1 and token i."""
        return self.text[self.ends[i - 1] if i else 0 : self.starts[i]]


def _evaluate(node: tuple, doc: _Doc, compiled: Compiled) -> tuple[bool, list[Hit]]:
    """(does the expression hold, the positioned hits that make it hold)."""
    op = node[0]
    if op == "concept":
        hits = [
            (doc.occs[i][0], doc.occs[i][1], frozenset((i,)), compiled.concepts[doc.occs[i][2]].weight)
            for c in node[1]
            for i in doc.by_concept.get(c, ())
        ]
        return bool(hits), hits
    if op == "not":
        truth, _ = _evaluate(node[1], doc, compiled)
        return not truth, []
    if op in ("and", "or"):
        a_truth, a_hits = _evaluate(node[1], doc, compiled)
        if op == "and" and not a_truth:
            return False, []
        b_truth, b_hits = _evaluate(node[2], doc, compiled)
        truth = (a_truth and b_truth) if op == "and" else (a_truth or b_truth)
        return truth, (a_hits + b_hits) if truth else []
    limit, left, right = node[1], node[2], node[3]
    _, a_hits = _evaluate(left, doc, compiled)
    if not a_hits:
        return False, []
    _, b_hits = _evaluate(right, doc, compiled)
    b_hits = sorted(set(b_hits))
    b_starts = [b[0] for b in b_hits]
    longest = max((b[1] - b[0] for b in b_hits), default=0)
    window = limit if limit >= 0 else len(doc.words)
    sids, pids = doc.sids, doc.pids

    def gap(a: Hit, b: Hit) -> int:
        return max(b[0] - a[1], a[0] - b[1], 0)

    def partners(a: Hit) -> list[Hit]:
        """The hits of `right` close enough to `a` (found by bisection, not by trying all pairs)."""
        first = bisect_left(b_starts, a[0] - window - longest)
        last = bisect_right(b_starts, a[1] + window)
        near = [b for b in b_hits[first:last] if gap(a, b) <= window]
        if op == "near":  # evidence stays inside a paragraph; exclusions (NOT NEAR) look across
            near = [b for b in near if pids[a[0]] == pids[b[0]]]
        if op in ("sent", "notsent"):
            near = [b for b in near if sids[a[0]] == sids[b[0]] == sids[a[1] - 1] == sids[b[1] - 1]]
        return near

    if op in ("notnear", "notsent"):
        kept = [a for a in dict.fromkeys(a_hits) if not partners(a)]
        return bool(kept), kept
    merged = []
    for a in dict.fromkeys(a_hits):
        near = partners(a)
        if near:  # one hit per hit of `left`, spanning its nearest partner: linear, not all pairs
            b = min(near, key=lambda b: gap(a, b))
            ids = a[2].union(*(n[2] for n in near))
            merged.append((min(a[0], b[0]), max(a[1], b[1]), ids, min(a[3], b[3])))
    return bool(merged), merged


def _snippet(doc: _Doc, hits: dict, ids: list[int], spans: dict[int, tuple[int, int]]) -> tuple[str, tuple[tuple[int, int], ...]]:
    """Plain text around the strongest hit (highest score, then most terms, then earliest)."""
    if not hits:
        return "", ()
    lo, hi, _ = max(hits, key=lambda k: (hits[k], len(k[2]), -k[0]))
    text = doc.text
    c_lo, c_hi = doc.starts[lo], doc.ends[hi - 1]
    start = max(0, c_lo - max(0, SNIPPET_CHARS - (c_hi - c_lo)) // 2)
    end = min(len(text), start + SNIPPET_CHARS)
    start = max(0, min(start, end - SNIPPET_CHARS)) if c_hi - c_lo < SNIPPET_CHARS else c_lo
    while start > 0 and start < c_lo and not text[start - 1].isspace():
        start += 1
    while end < len(text) and end > c_hi and not text[end].isspace():
        end -= 1
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    snippet = " ".join(text[start:end].split("\n")).replace("\r", " ").replace("\t", " ")
    highlights: list[tuple[int, int]] = []
    for i in ids:
        s_start, s_end = spans[i]
        if start <= s_start and s_end <= end and (not highlights or s_start - start >= highlights[-1][1]):
            highlights.append((s_start - start, s_end - start))  # in order, never overlapping
    return snippet, tuple(highlights)


def load_rules(specs: Sequence[str] = ("arms-procurement",)) -> RuleSet:
    """Each spec is the name of a shipped rule set (crawler/rulesets/<name>.toml) or a path to a TOML file."""
    compiled = Compiled()
    for spec in specs:
        shipped = RULESETS_DIR / f"{spec}.toml"
        path = shipped if "/" not in spec and "\\" not in spec and shipped.is_file() else Path(spec)
        if not path.is_file():
            known = ", ".join(sorted(p.stem for p in RULESETS_DIR.glob("*.toml")))
            raise RuleFileError(f"{spec}:1: no such rule file (shipped rule sets: {known})")
        load_file(path, compiled)
    compiled.finalize()
    return RuleSet(compiled)


def format_matches(matches: Sequence[Match], as_json: bool = False) -> str:
    """Human-readable (or JSON) flags for `armswatch match`."""
    if as_json:
        return json.dumps([asdict(m) for m in matches], ensure_ascii=False, indent=2)
    if not matches:
        return "no rule matched"
    blocks = []
    for m in matches:
        marked, last = [], 0
        for s, e in m.highlights:
            marked.append(m.snippet[last:s] + "[" + m.snippet[s:e] + "]")
            last = e
        marked.append(m.snippet[last:])
        lines = [
            f"{m.rule}  score {m.score:g}",
            f"  suppliers:  {', '.join(m.suppliers) or '-'}",
            f"  recipients: {', '.join(m.recipients) or '-'}",
            f"  weapons:    {', '.join(m.weapons) or '-'}",
            "  terms:      " + "; ".join(f"{t.term} ({t.concept} @{t.start})" for t in m.terms),
            f"  snippet:    {''.join(marked)}",
        ]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)
