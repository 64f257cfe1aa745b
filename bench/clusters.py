"""How well armswatch groups articles into stories, and what it costs per article.

Usage: python -m bench.clusters [--tags auto|rules|labelled] [--sizes 1000,10000] [--verbose]

Loads the labelled devset (tests/clusters_devset: one TOML file per story), stores every
article in a fresh SQLite database through ArticleStore, assigns stories in publication
order with crawler.clustering.assign_story, and prints pairwise precision and recall of
"same story", split same-language / cross-language. Then fills archives of synthetic
articles and times assign_story at each size, for new articles and for copies of them: with
the SQLite index the cost must not grow with the archive.
"""

from __future__ import annotations

import argparse
import itertools
import random
import statistics
import tempfile
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crawler.clustering import assign_story
from crawler.items import Article, Match, ProcessedArticle, text_hash
from storage.store import ArticleStore

DEVSET = Path(__file__).resolve().parent.parent / "tests" / "clusters_devset"


@dataclass(frozen=True)
class DevArticle:
    id: str
    group: str
    source: str
    language: str
    published: str
    kind: str
    title: str
    text: str
    tags: dict[str, list[str]] = field(default_factory=dict)


def load_devset(root: Path = DEVSET) -> list[DevArticle]:
    """Every article of every group file, copies expanded, oldest first."""
    articles: list[DevArticle] = []
    for path in sorted(root.glob("*.toml")):
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        written: dict[str, dict[str, Any]] = {}
        for entry in data["articles"]:
            if "copy_of" in entry:
                original = written[entry["copy_of"]]
                text = original["text"].strip()
                for old, new in entry.get("replace", []):
                    if old not in text:
                        raise ValueError(f"{path.name}: {entry['id']}: {old!r} not in {entry['copy_of']}")
                    text = text.replace(old, new)
                entry = {**original, **entry, "text": text, "title": entry.get("title", original["title"])}
            else:
                entry = {**entry, "text": entry["text"].strip()}
            written[entry["id"]] = {**entry, "prefix": "", "suffix": ""}
            entry = {**entry, "text": entry.get("prefix", "") + entry["text"] + entry.get("suffix", "")}
            articles.append(
                DevArticle(
                    id=entry["id"], group=data["group"], source=entry["source"], language=entry["language"],
                    published=entry["published"], kind=entry.get("kind", "original"), title=entry["title"],
                    text=entry["text"].strip(), tags=entry.get("tags", data.get("tags", {})),
                )
            )
    return sorted(articles, key=lambda a: (a.published, a.id))


def _rules_available() -> bool:
    return (Path(__file__).resolve().parent.parent / "crawler" / "rules.py").exists()


def tag_matches(article: DevArticle, mode: str) -> tuple[Match, ...]:
    """The matches an article gets: from the real rules, or from the devset labels."""
    if mode == "rules" or (mode == "auto" and _rules_available()):
        return tuple(_cached_rules().match(article.title, article.text, article.language))
    tags = article.tags
    rules = tags.get("rules") or ["arms-procurement"]
    return tuple(
        Match(rule=rule, score=1.0, terms=(), snippet=article.title, highlights=(),
              suppliers=tuple(tags.get("suppliers", ())), recipients=tuple(tags.get("recipients", ())),
              weapons=tuple(tags.get("weapons", ())))
        for rule in rules
    )


_RULES = None


def _cached_rules():
    global _RULES
    if _RULES is None:
        from crawler.rules import load_rules

        _RULES = load_rules()
    return _RULES


def store_article(store: ArticleStore, url: str, source: str, language: str, published: str, title: str, text: str,
                  matches: tuple[Match, ...] = ()) -> int:
    article = Article(url=url, canonical_url=url, title=title, text=text, published=published, language=language,
                      site_name=source)
    saved = store.save_article(ProcessedArticle(url, source, article, matches, content_hash=text_hash(text)))
    return saved.article_id


def cluster_devset(store: ArticleStore, articles: list[DevArticle], tags: str = "auto") -> dict[str, int]:
    """Store and cluster the devset in publication order; returns devset id -> story id."""
    stories = {}
    for article in articles:
        article_id = store_article(store, f"https://{article.source}.example/{article.id}", article.source,
                                   article.language, article.published, article.title, article.text,
                                   tag_matches(article, tags))
        stories[article.id] = assign_story(store, article_id).story_id
    return stories


@dataclass
class PairCounts:
    tp: int = 0
    fp: int = 0
    fn: int = 0

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0


def pairwise(articles: list[DevArticle], stories: dict[str, int]) -> dict[str, Any]:
    """Pairwise precision/recall of "same story", overall, same-language and cross-language."""
    counts = {"all": PairCounts(), "same-language": PairCounts(), "cross-language": PairCounts()}
    errors: list[tuple[str, str, str]] = []
    for a, b in itertools.combinations(articles, 2):
        truth = a.group == b.group
        predicted = stories[a.id] == stories[b.id]
        if not truth and not predicted:
            continue
        split = "same-language" if a.language == b.language else "cross-language"
        for name in ("all", split):
            c = counts[name]
            if truth and predicted:
                c.tp += 1
            elif predicted:
                c.fp += 1
            else:
                c.fn += 1
        if truth != predicted:
            errors.append(("wrong merge" if predicted else "missed", a.id, b.id))
    return {"counts": counts, "errors": errors}


def _filler(rng: random.Random, vocabulary: list[str], names: list[str]) -> tuple[str, str]:
    """A synthetic article: random words from the devset vocabulary, a few figures and names.

    Some figures and names are very common (every filler article may say "Pyongyang" or
    "152"), so the index's per-key limit is exercised, not only lucky sparse keys."""
    words = rng.choices(vocabulary, k=rng.randint(120, 260))
    for _ in range(4):
        words.insert(rng.randrange(len(words)), str(rng.choice([152, 300, rng.randint(10, 100_000)])))
        words.insert(rng.randrange(len(words)), "in " + rng.choice(names))
    title = " ".join(rng.choices(vocabulary, k=8)).capitalize()
    return title, " ".join(words) + "."


def cost_per_article(sizes: list[int], new_articles: int = 50, seed: int = 7) -> list[dict[str, float]]:
    """Median and p95 milliseconds of assign_story, with archives of each size, for new articles
    and for copies of them (found through their text's band keys alone).

    Filler articles are spread over two weeks around the new ones, so every one of them is
    inside the time window: only the index keeps the lookup small. The number of stored
    articles compared per new one is reported too: unlike milliseconds, it does not depend
    on what else the machine is doing.
    """
    devset = load_devset()
    vocabulary = sorted({w for a in devset for w in a.text.split() if w.isalpha()})
    names = ["Pyongyang", "Shahed-136", "KN-23", "Kharkiv"] + [
        "".join(random.Random(i).choices("bcdfghklmnprstvz", k=4)).capitalize() + "ovo" for i in range(400)
    ]
    results = []
    for size in sizes:
        rng = random.Random(seed)
        with tempfile.TemporaryDirectory() as tmp, ArticleStore(Path(tmp) / "bench.db") as store:
            for start in range(0, size, 500):
                with store.transaction():  # filler only: fewer commits, same work per article
                    for i in range(start, min(size, start + 500)):
                        title, text = _filler(rng, vocabulary, names)
                        day = 10 + rng.randint(0, 13)
                        article_id = store_article(store, f"https://filler.example/{i}", f"filler-{i % 40}", "en",
                                                   f"2024-09-{day:02d}T12:00:00Z", title, text)
                        assign_story(store, article_id)
            for i in range(5):  # warm-up: loads dictionaries and fills the caches
                title, text = _filler(rng, vocabulary, names)
                assign_story(store, store_article(store, f"https://warm.example/{i}", "warm", "en",
                                                  "2024-09-17T12:00:00Z", title, text))
            row = {"size": size}
            # first each devset article as news, then each again as a copy under another URL
            for kind in ("new", "copy"):
                timings, candidates = [], []
                for i, article in enumerate(devset[:new_articles]):
                    article_id = store_article(store, f"https://{kind}.example/{i}", article.source, article.language,
                                               article.published, article.title, article.text,
                                               tag_matches(article, "labelled"))
                    start = time.perf_counter()
                    decision = assign_story(store, article_id)
                    timings.append((time.perf_counter() - start) * 1000)
                    candidates.append(decision.signals["candidates"])
                timings.sort()
                row[kind] = {"median_ms": statistics.median(timings), "p95_ms": timings[int(len(timings) * 0.95) - 1],
                             "candidates": statistics.median(candidates), "max_candidates": max(candidates)}
            results.append(row)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tags", choices=["auto", "rules", "labelled"], default="auto",
                        help="where rule tags come from (auto: crawler/rules.py when present)")
    parser.add_argument("--sizes", default="1000,10000", help="archive sizes for the cost measurement ('' to skip)")
    parser.add_argument("--verbose", action="store_true", help="list every wrong merge and missed pair")
    args = parser.parse_args(argv)

    articles = load_devset()
    mode = args.tags if args.tags != "auto" else ("rules" if _rules_available() else "labelled")
    with tempfile.TemporaryDirectory() as tmp, ArticleStore(Path(tmp) / "devset.db") as store:
        stories = cluster_devset(store, articles, mode)
        methods = store.query("select method, count(*) as n from story_links group by method order by n desc")
    groups = {a.group for a in articles}
    languages = sorted({a.language for a in articles})
    print(f"devset: {len(articles)} articles in {len(groups)} stories, languages {', '.join(languages)}; tags: {mode}")
    print(f"stories found: {len(set(stories.values()))}; decisions: "
          + ", ".join(f"{m['method']} {m['n']}" for m in methods))
    result = pairwise(articles, stories)
    for name, c in result["counts"].items():
        print(f"{name:15} pairs: tp {c.tp:4} fp {c.fp:3} fn {c.fn:4}   precision {c.precision:.3f}   recall {c.recall:.3f}")
    if args.verbose:
        for kind, a, b in result["errors"]:
            print(f"  {kind}: {a} ~ {b}")
    if args.sizes:
        sizes = [int(s) for s in args.sizes.split(",") if s]
        for row in cost_per_article(sizes):
            for kind, label in (("new", "new article"), ("copy", "copy of one")):
                cost = row[kind]
                print(f"cost per {label:11}, archive of {row['size']:>6} articles: median {cost['median_ms']:.2f} ms,"
                      f" p95 {cost['p95_ms']:.2f} ms; candidates compared: median {cost['candidates']:.0f},"
                      f" max {cost['max_candidates']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
