"""Score a rule set on a labelled set (tests/rules_devset, or the blind set) and time it.

    python bench/rules.py [--set devset|blindset] [--rules NAME_OR_PATH] [--rule arms-procurement] [--errors]

The blind set (tests/rules_blindset) was written before its author read the rules; its positives
name their suppliers and recipients, so this also reports how well the tags agree.

Prints precision, recall and F1 per language, per split (tune / heldout) and overall,
and the matching cost in milliseconds for a 1,000-word article (one process).
"""

from __future__ import annotations

import argparse
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from crawler.rules import RuleSet, load_rules  # noqa: E402

DEVSET = ROOT / "tests" / "rules_devset"
SETS = {"devset": DEVSET, "blindset": ROOT / "tests" / "rules_blindset"}
LANGUAGES = ("en", "fr", "it", "de", "es", "uk", "ru")


@dataclass(frozen=True)
class Example:
    id: str
    lang: str
    label: bool
    split: str
    title: str | None
    text: str
    hard: str | None = None
    suppliers: tuple[str, ...] = ()
    recipients: tuple[str, ...] = ()


def load_devset(directory: Path = DEVSET) -> list[Example]:
    """Every article of every `<lang>.toml`; `seed = "seeds/x.txt"` reads the text from a file."""
    examples = []
    for lang in LANGUAGES:
        path = directory / f"{lang}.toml"
        if not path.exists():
            continue
        for a in tomllib.loads(path.read_text(encoding="utf-8"))["article"]:
            text = (directory / a["seed"]).read_text(encoding="utf-8") if "seed" in a else a["text"]
            examples.append(
                Example(
                    a["id"], lang, a["label"], a["split"], a.get("title") or None, text, a.get("hard"),
                    tuple(a.get("suppliers", ())), tuple(a.get("recipients", ())),
                )
            )
    return examples


def flagged(rules: RuleSet, example: Example, rule: str, language: str | None) -> bool:
    return any(m.rule == rule for m in rules.match(example.title, example.text, language))


def scores(pairs: list[tuple[bool, bool]]) -> tuple[float, float, float, int, int]:
    """(precision, recall, F1, positives, n) for (label, predicted) pairs."""
    tp = sum(1 for label, pred in pairs if label and pred)
    fp = sum(1 for label, pred in pairs if not label and pred)
    fn = sum(1 for label, pred in pairs if label and not pred)
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1, tp + fn, len(pairs)


def evaluate(rules: RuleSet, examples: list[Example], rule: str, use_language: bool = True) -> dict[Example, bool]:
    return {e: flagged(rules, e, rule, e.lang if use_language else None) for e in examples}


def tag_agreement(rules: RuleSet, examples: list[Example], rule: str) -> dict[str, tuple[int, int, int]]:
    """Per role, (expected names found, expected names, tagged names not expected) over flagged positives
    that name their parties; only names the rule set can tag count as expected."""
    taggable = {c.tag for c in rules._c.concepts if c.tag}
    totals = {"suppliers": [0, 0, 0], "recipients": [0, 0, 0]}
    for e in examples:
        if not e.label or not (e.suppliers or e.recipients):
            continue
        found = [m for m in rules.match(e.title, e.text, e.lang) if m.rule == rule]
        if not found:
            continue
        for role, expected in (("suppliers", e.suppliers), ("recipients", e.recipients)):
            wanted = {n for n in expected if n in taggable}
            got = set(getattr(found[0], role))
            totals[role][0] += len(wanted & got)
            totals[role][1] += len(wanted)
            totals[role][2] += len(got - set(expected))
    return {role: (a, b, c) for role, (a, b, c) in totals.items()}


def thousand_word_articles(examples: list[Example]) -> tuple[list[Example], list[Example]]:
    """Per language, a 1,000-word article no rule should flag (negatives glued together) and one
    that opens with a relevant story and goes on with unrelated text (the costlier, flagged case)."""
    plain, flagged = [], []
    for lang in LANGUAGES:
        negatives = [e.text for e in examples if e.lang == lang and not e.label]
        positive = next((e.text for e in examples if e.lang == lang and e.label and "seed" not in e.id), None)
        if not negatives or positive is None:
            continue
        filler = " ".join("\n\n".join(negatives * 10).split(" ")[:1000])
        plain.append(Example(f"{lang}-1000-plain", lang, False, "bench", None, filler))
        mixed = " ".join((positive + "\n\n" + filler).split(" ")[:1000])
        flagged.append(Example(f"{lang}-1000-flagged", lang, True, "bench", None, mixed))
    return plain, flagged


def cost_ms(rules: RuleSet, articles: list[Example], rounds: int = 15) -> float:
    """Mean CPU milliseconds per article (best of `rounds`; CPU time, so other processes do not count)."""
    best = float("inf")
    for _ in range(rounds):
        start = time.process_time()
        for e in articles:
            rules.match(e.title, e.text, e.lang)
        best = min(best, time.process_time() - start)
    return best * 1000 / len(articles)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rules", action="append", help="rule set name or TOML path (default: arms-procurement)")
    parser.add_argument("--rule", default="arms-procurement", help="the rule whose flags are scored")
    parser.add_argument("--errors", action="store_true", help="list false positives and false negatives")
    parser.add_argument("--set", choices=sorted(SETS), default="devset", help="which labelled set to score")
    args = parser.parse_args(argv)

    rules = load_rules(args.rules or ["arms-procurement"])
    examples = load_devset(SETS[args.set])
    print(f"{args.set}: {len(examples)} articles, {sum(e.label for e in examples)} relevant\n")
    for use_language, heading in ((True, "language given"), (False, "language unknown (None)")):
        results = evaluate(rules, examples, args.rule, use_language)
        print(f"== {heading}")
        print(f"{'group':<16}{'P':>7}{'R':>7}{'F1':>7}{'pos':>6}{'n':>6}")
        groups = [(f"lang {lang}", [e for e in examples if e.lang == lang]) for lang in LANGUAGES]
        groups += [(f"split {s}", [e for e in examples if e.split == s]) for s in ("tune", "heldout", "blind")]
        groups += [("hard negatives", [e for e in examples if e.hard]), ("overall", examples)]
        for name, group in groups:
            if not group:
                continue
            p, r, f, pos, n = scores([(e.label, results[e]) for e in group])
            print(f"{name:<16}{p:7.3f}{r:7.3f}{f:7.3f}{pos:6d}{n:6d}")
        if args.errors:
            for e, pred in results.items():
                if pred != e.label:
                    kind = "FP" if pred else "FN"
                    print(f"  {kind} {e.id} [{e.split}] {e.title or e.text[:60]!r} {('- ' + e.hard) if e.hard else ''}")
        print()
    if any(e.suppliers or e.recipients for e in examples):
        for role, (found, expected, extra) in tag_agreement(rules, examples, args.rule).items():
            share = found / expected if expected else 1.0
            print(f"tags, {role}: {found}/{expected} expected (taggable) names found ({share:.2f}), {extra} tagged names not expected")
        print()
    plain, flagged_articles = thousand_word_articles(examples)
    rules.match(None, plain[0].text)  # warm the per-word cache, as a long-running worker would be
    wrongly = [e.id for e in plain if rules.match(None, e.text, e.lang)]
    print(f"1,000-word articles glued from negatives that were flagged anyway: {wrongly or 'none'}")
    print(f"cost, 1,000-word article no rule flags: {cost_ms(rules, plain):.3f} ms (one process, CPU time)")
    print(f"cost, 1,000-word article that is flagged: {cost_ms(rules, flagged_articles):.3f} ms")
    per_article = cost_ms(rules, examples)
    mean_words = sum(len(e.text.split()) for e in examples) / len(examples)
    share = sum(flagged(rules, e, args.rule, e.lang) for e in examples) / len(examples)
    print(f"cost per dev-set article (mean {mean_words:.0f} words, {share:.0%} flagged): {per_article:.3f} ms")
    # Short articles, half of them flagged: the cost per article and per flag (the explanation),
    # multiplied by 1,000 / mean words. An actual 1,000-word article is the two lines above.
    print(f"cost, dev-set articles scaled to 1,000 words: {per_article / mean_words * 1000:.3f} ms"
          " (per-article and per-flag costs scaled linearly)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
