"""Flag articles with the rules of one or more rule files, and explain every flag.

A rule is an expression over named concepts (term lists per language); a flag carries the
rule name, a score, the matched terms with their offsets in `match_text(title, text)`, a
snippet around the strongest match and the supplier / recipient / weapon tags.
"""

from __future__ import annotations

import json
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

from crawler.items import Match, MatchedTerm
from crawler.rules_parse import Compiled, Rule, RuleFileError, load_file
from crawler.rules_tags import read_tags
from crawler.rules_text import Tokens

__all__ = ["RuleFileError", "RuleSet", "format_matches", "load_rules", "match_text"]

RULESETS_DIR = Path(__file__).with_name("rulesets")
SNIPPET_CHARS = 300
MAX_TERMS = 60

Hit = tuple[int, int, frozenset, float]  # (first token, end token, occurrence indexes, score)
_DROP, _KEEP, _EXCEPT = 0, 1, 2  # what a term's hit does: ignored (other language), counts, or cancels


def match_text(title: str | None, text: str) -> str:
    """The exact string that MatchedTerm offsets refer to."""
    return f"{title}\n\n{text}" if title else text


class RuleSet:
    """Compiled rules; plain data, so it pickles into ProcessPoolExecutor workers."""

    def __init__(self, compiled: Compiled) -> None:
        self._c = compiled
        self.names: tuple[str, ...] = tuple(r.name for r in compiled.rules)
        self._needs = [_fewest(_requirements(rule.expr)) for rule in compiled.rules]
        self._weights = [c.weight for c in compiled.concepts]
        keys: dict[tuple[int, ...], int] = {}
        self._programs = [_compile(rule.expr, keys) for rule in compiled.rules]
        self._keeps: dict[str | None, dict[tuple, int]] = {}  # language -> term payload -> _DROP/_KEEP/_EXCEPT

    def __getstate__(self) -> dict:
        return {"_c": self._c}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["_c"])

    def match(self, title: str | None, text: str, language: str | None = None) -> tuple[Match, ...]:
        """Every rule that flags the article. `language` narrows only language-specific concepts."""
        full = match_text(title, text)
        tokens = Tokens(full)
        scanned = self._c.index.scan(tokens.words)
        occs = self._occurrences(scanned, language)
        present = {c for _, _, c in occs}
        # Rules missing a concept they cannot hold without (most articles) are not evaluated.
        candidates = [
            (rule, program)
            for rule, needs, program in zip(self._c.rules, self._needs, self._programs)
            if not any(present.isdisjoint(need) for need in needs)
        ]
        if not candidates:
            return ()
        doc = _Doc(tokens, occs, self._weights)
        results = []
        for rule, program in candidates:
            truth, hits = program(doc)
            if truth:
                found = self._explain(rule, doc, hits, language)
                if found is not None:
                    results.append(found)
        return tuple(results)

    def _marker_occurrences(self, doc: "_Doc", sentences: set[int], language: str | None) -> list[tuple[int, int, int]]:
        """Role markers (from, to, and ...) in the evidence sentences only: they are frequent words."""
        sids, words = doc.sids, doc.words
        picked: list[str] = []  # the evidence sentences one after another, scanned in one pass
        shifts: list[int] = []  # for each picked word, its index in the article
        ends: list[int] = []  # for each picked word, where its sentence ends in `picked`
        for sentence in sorted(sentences):
            lo, hi = bisect_left(sids, sentence), bisect_right(sids, sentence)
            picked += words[lo:hi]
            shifts += range(lo, hi)
            ends += [len(picked)] * (hi - lo)
        scanned = [(shifts[a], shifts[a] + b - a, payload) for a, b, payload in self._c.tag_index.scan(picked) if b <= ends[a]]
        return self._occurrences(scanned, language)

    def _keep(self, payload: tuple, language: str | None) -> int:
        """_EXCEPT for an `except` term, _DROP for a term of another language in a language-specific concept."""
        c, lang, negative = payload
        if negative:
            return _EXCEPT
        concept = self._c.concepts[c]
        if concept.language_specific and language in concept.languages and lang not in (language, "any"):
            return _DROP
        return _KEEP

    def _occurrences(self, scanned: list[tuple[int, int, tuple]], language: str | None) -> list[tuple[int, int, int]]:
        """(first token, end token, concept) of each term found, minus exceptions and terms inside a longer one.

        `scanned` must list each term's hits in text order."""
        keeps = self._keeps.get(language)
        if keeps is None:
            keeps = self._keeps[language] = {}
        positive: dict[tuple[int, int], int] = {}
        excluded: dict[int, list[tuple[int, int]]] = {}
        keep_of, longest_at = keeps.get, positive.get
        for lo, hi, payload in scanned:
            keep = keep_of(payload)
            if keep is None:
                keep = keeps[payload] = self._keep(payload, language)
            if keep == _KEEP:
                key = (payload[0], lo)
                if longest_at(key, 0) < hi:
                    positive[key] = hi
            elif keep == _EXCEPT:
                excluded.setdefault(payload[0], []).append((lo, hi))
        occs = []
        longest: dict[int, tuple[int, int]] = {}
        for (c, lo), hi in positive.items():  # per concept in text order, which is all that matters here
            if c in excluded and any(e_lo < hi and lo < e_hi for e_lo, e_hi in excluded[c]):
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
        start, end = doc.tokens.start, doc.tokens.end
        spans = {i: (start(doc.occs[i][0]), end(doc.occs[i][1] - 1)) for i in ids}
        terms = tuple(
            MatchedTerm(concepts[doc.occs[i][2]].name, doc.text[spans[i][0] : spans[i][1]], *spans[i]) for i in ids[:MAX_TERMS]
        )
        snippet, highlights = _snippet(doc, unique, ids, spans)
        wanted = {doc.sids[lo] for lo, _, _ in evidence}
        markers = self._marker_occurrences(doc, wanted, language)
        in_evidence = [o for o in doc.occs if doc.sids[o[0]] in wanted]  # read_tags looks nowhere else
        suppliers, recipients, weapons = read_tags(
            rule.tagging, concepts, sorted(in_evidence + markers), evidence, doc.sids, doc.gap
        )
        return Match(rule.name, score, terms, snippet, highlights, suppliers, recipients, weapons)


class _Doc:
    """One article as the evaluator sees it; character offsets are computed only for a flag."""

    def __init__(self, tokens: Tokens, occs: list, weights: list[float]) -> None:
        self.tokens, self.text, self.words, self.sids, self.pids = tokens, tokens.text, tokens.words, tokens.sids, tokens.pids
        self.occs, self.weights = occs, weights
        self.memo: dict[object, object] = {}  # per-article hits of concept lists, plain and sorted
        self.by_concept: dict[int, list[int]] = {}
        for i, (_, _, c) in enumerate(occs):
            self.by_concept.setdefault(c, []).append(i)

    def gap(self, i: int) -> str:
        """The text between token i-1 and token i."""
        return self.text[self.tokens.end(i - 1) if i else 0 : self.tokens.start(i)]


def _requirements(node: tuple) -> list[frozenset[int]]:
    """Sets of concepts of which the expression needs at least one occurrence each to hold."""
    op = node[0]
    if op == "concept":
        return [node[1]]
    if op == "not":
        return []
    if op == "and" or op in ("near", "sent"):
        return _requirements(node[-2]) + _requirements(node[-1])
    if op in ("notnear", "notsent"):
        return _requirements(node[2])
    left, right = _requirements(node[1]), _requirements(node[2])  # or: one of each side's needs
    return _fewest([a | b for a in left for b in right])


def _fewest(needs: list[frozenset[int]]) -> list[frozenset[int]]:
    """The same requirements without repeats and without those implied by a narrower one."""
    unique = list(dict.fromkeys(needs))
    return [n for n in unique if not any(other < n for other in unique)][:64]


Program = Callable[["_Doc"], tuple[bool, list[Hit]]]


def _compile(node: tuple, keys: dict[tuple[int, ...], int]) -> Program:
    """Turn an expression into nested functions of an article: (does it hold, the positioned hits
    that make it hold). Compiled once per rule set, so matching does no dispatch on operator names.
    `keys` numbers the concept lists, so that hits of the same list are built once per article."""
    op = node[0]
    if op == "concept":
        ids = tuple(node[1])
        key = keys.setdefault(ids, len(keys))

        def concept(doc: _Doc) -> tuple[bool, list[Hit]]:
            hits = doc.memo.get(key)  # rules name the same concepts many times: build once per article
            if hits is None:
                occs, weights, by_concept = doc.occs, doc.weights, doc.by_concept
                hits = doc.memo[key] = [
                    (occs[i][0], occs[i][1], frozenset((i,)), weights[occs[i][2]]) for c in ids for i in by_concept.get(c, ())
                ]
            return bool(hits), hits

        return concept
    if op == "not":
        inner = _compile(node[1], keys)

        def negation(doc: _Doc) -> tuple[bool, list[Hit]]:
            return not inner(doc)[0], []

        return negation
    if op == "and":
        first, second = _compile(node[1], keys), _compile(node[2], keys)

        def conjunction(doc: _Doc) -> tuple[bool, list[Hit]]:
            a_truth, a_hits = first(doc)
            if not a_truth:
                return False, []
            b_truth, b_hits = second(doc)
            return (True, a_hits + b_hits) if b_truth else (False, [])

        return conjunction
    if op == "or":
        first, second = _compile(node[1], keys), _compile(node[2], keys)

        def disjunction(doc: _Doc) -> tuple[bool, list[Hit]]:
            a_truth, a_hits = first(doc)
            b_truth, b_hits = second(doc)
            return (True, a_hits + b_hits) if a_truth or b_truth else (False, [])

        return disjunction
    return _compile_proximity(node, keys)


def _compile_proximity(node: tuple, keys: dict[tuple[int, ...], int]) -> Program:
    """x NEAR/N y, x SENTENCE[/N] y and their NOT forms."""
    op, limit, right = node[0], node[1], node[3]
    left, right_program = _compile(node[2], keys), _compile(right, keys)
    negated = op in ("notnear", "notsent")
    same_sentence = op in ("sent", "notsent")
    same_paragraph = op == "near"  # evidence stays inside a paragraph; exclusions (NOT NEAR) look across
    memo_key = ("sorted", keys[tuple(right[1])]) if right[0] == "concept" else None  # right side, sorted once

    def proximity(doc: _Doc) -> tuple[bool, list[Hit]]:
        _, a_hits = left(doc)
        if not a_hits:
            return False, []
        found = doc.memo.get(memo_key) if memo_key else None
        if found is None:
            _, b_hits = right_program(doc)
            b_hits = sorted(set(b_hits))
            found = (b_hits, [b[0] for b in b_hits], max((b[1] - b[0] for b in b_hits), default=0))
            if memo_key:
                doc.memo[memo_key] = found
        b_hits, b_starts, longest = found
        window = limit if limit >= 0 else len(doc.words)
        sids, pids = doc.sids, doc.pids
        out = []
        for a in dict.fromkeys(a_hits):
            a_lo, a_hi = a[0], a[1]
            # the hits of `right` close enough to `a`, found by bisection, not by trying all pairs
            first = bisect_left(b_starts, a_lo - window - longest)
            last = bisect_right(b_starts, a_hi + window)
            near = [b for b in b_hits[first:last] if b[0] - a_hi <= window and a_lo - b[1] <= window] if first < last else []
            if near and same_paragraph:
                paragraph = pids[a_lo]
                near = [b for b in near if pids[b[0]] == paragraph]
            if near and same_sentence:
                sentence = sids[a_lo]
                near = [b for b in near if sentence == sids[b[0]] == sids[b[1] - 1]] if sids[a_hi - 1] == sentence else []
            if negated:
                if not near:
                    out.append(a)
            elif near:  # one hit per hit of `left`, spanning its nearest partner: linear, not all pairs
                b = min(near, key=lambda b: max(b[0] - a_hi, a_lo - b[1], 0))
                ids = a[2].union(*(n[2] for n in near))
                out.append((min(a_lo, b[0]), max(a_hi, b[1]), ids, min(a[3], b[3])))
        return bool(out), out

    return proximity


def _snippet(doc: _Doc, hits: dict, ids: list[int], spans: dict[int, tuple[int, int]]) -> tuple[str, tuple[tuple[int, int], ...]]:
    """Plain text around the strongest hit (highest score, then most terms, then earliest)."""
    if not hits:
        return "", ()
    lo, hi, _ = max(hits, key=lambda k: (hits[k], len(k[2]), -k[0]))
    text = doc.text
    c_lo, c_hi = doc.tokens.start(lo), doc.tokens.end(hi - 1)
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


# what runs when the config names no rule sets
DEFAULT_RULE_SETS: tuple[str, ...] = ("arms-procurement",)


def load_rules(specs: Sequence[str] = DEFAULT_RULE_SETS) -> RuleSet:
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
