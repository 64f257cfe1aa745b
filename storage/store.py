"""ArticleStore: the one owner of armswatch's SQLite schema and of every write to it.

Other modules ask it; none of them writes SQL of its own. Writes that belong together
(an article, its matches and their outbox rows) commit in one `BEGIN IMMEDIATE`
transaction, so a crash mid-run loses nothing the next run cannot finish, and nothing
is flagged or queued twice (unique keys make every write idempotent).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import sqlite_utils

from crawler.items import Match, ProcessedArticle
from storage.schema import migrate

BUSY_TIMEOUT_MS = 30_000


def utc_now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class SavedArticle:
    article_id: int
    is_new: bool
    is_update: bool
    new_matches: int


RecipientsForRule = Callable[[str], Iterable[tuple[str, str]]]  # rule -> (address, mode)


class ArticleStore:
    """A SQLite database of sources, articles, matches, alerts and crawl runs."""

    def __init__(self, path: str | Path):
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            self.db = sqlite_utils.Database(conn)
            if self.path != ":memory:":
                self.db.enable_wal()
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
            with self.transaction():
                migrate(self.db)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: database unusable: {exc}") from exc

    # -- plumbing -----------------------------------------------------------------

    def close(self) -> None:
        self.db.conn.close()

    def __enter__(self) -> ArticleStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite_utils.Database]:
        """One write transaction; nested calls join the outer one (via sqlite-utils savepoints)."""
        conn = self.db.conn
        if conn.in_transaction:
            with self.db.atomic():
                yield self.db
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        else:
            conn.execute("COMMIT")

    def query(self, sql: str, params: Iterable[Any] | dict[str, Any] = ()) -> list[dict[str, Any]]:
        return list(self.db.query(sql, params))

    # -- sources and their health ------------------------------------------------------

    def sync_sources(self, sources: Iterable[Any]) -> None:
        """Mirror the configured sources (crawler.config.Source) into the `sources` table."""
        now = utc_now()
        with self.transaction():
            for source in sources:
                row = {
                    "name": source.name,
                    "url": source.url,
                    "type": source.type,
                    "language": source.language,
                    "country": source.country,
                    "section": source.section,
                    "state_affiliated": int(bool(source.state_affiliated)),
                    "enabled": int(bool(source.enabled)),
                    "configured_interval": source.interval,
                }
                existing = self.db.execute("select 1 from sources where name = ?", [source.name]).fetchone()
                if existing:
                    self.db["sources"].update(source.name, row)
                else:
                    self.db["sources"].insert({**row, "added_at": now})

    def source_validators(self, name: str) -> dict[str, str | None]:
        """ETag, Last-Modified and body hash from the last successful fetch of a source."""
        row = self.db.execute(
            "select etag, last_modified, body_hash from sources where name = ?", [name]
        ).fetchone()
        if not row:
            return {"etag": None, "last_modified": None, "body_hash": None}
        return {"etag": row[0], "last_modified": row[1], "body_hash": row[2]}

    def set_source_validators(self, name: str, etag: str | None, last_modified: str | None, body_hash: str | None) -> None:
        with self.transaction():
            self.db.execute(
                "update sources set etag = ?, last_modified = ?, body_hash = ? where name = ?",
                [etag, last_modified, body_hash, name],
            )

    def record_source_result(
        self,
        name: str,
        *,
        ok: bool,
        status: str,
        http_status: int | None = None,
        error: str | None = None,
        items_seen: int = 0,
        items_new: int = 0,
        run_id: int | None = None,
    ) -> None:
        """Update a source's health after one fetch of its feed, sitemap or listing page.

        `status` is "ok", "not modified", "unchanged", or an error class such as
        "timeout", "DNS", "refused", "HTTP 500", "parse error", "robots denied".
        """
        now = utc_now()
        with self.transaction():
            current = self.db.execute(
                "select consecutive_failures, last_success, last_new_article from source_health where source = ?",
                [name],
            ).fetchone()
            failures = 0 if ok else ((current[0] if current else 0) + 1)
            row = {
                "source": name,
                "last_attempt": now,
                "last_success": now if ok else (current[1] if current else None),
                "status": status,
                "http_status": http_status,
                "error": error,
                "consecutive_failures": failures,
                "items_seen": items_seen,
                "items_new": items_new,
                "last_new_article": (current[2] if current else None),
                "last_run_id": run_id,
            }
            self.db["source_health"].upsert(row, pk="source")

    def add_items_new(self, name: str, count: int = 1) -> None:
        """Count a new article against the source that listed it (its health row)."""
        with self.transaction():
            self.db.execute(
                "update source_health set items_new = items_new + ?, last_new_article = ? where source = ?",
                [count, utc_now(), name],
            )

    def set_poll_interval(self, name: str, seconds: float) -> None:
        with self.transaction():
            self.db.execute("update source_health set poll_interval = ? where source = ?", [seconds, name])

    def source_health(self) -> list[dict[str, Any]]:
        return self.query(
            "select s.name as source, s.type, s.url, h.status, h.http_status, h.error, h.consecutive_failures,"
            " h.last_attempt, h.last_success, h.items_seen, h.items_new, h.last_new_article, h.poll_interval"
            " from sources s left join source_health h on h.source = s.name"
            " order by coalesce(h.consecutive_failures, 0) desc, s.name"
        )

    # -- crawl runs and errors ---------------------------------------------------------

    def start_run(self, trigger: str, sources: int, pid: int | None = None) -> int:
        with self.transaction():
            table = self.db["crawl_runs"]
            table.insert(
                {"trigger": trigger, "started_at": utc_now(), "sources": sources, "pid": pid, "exit_reason": "running"}
            )
            return int(table.last_pk)

    def finish_run(self, run_id: int, exit_reason: str, counts: dict[str, int]) -> None:
        allowed = {"feeds", "pages_fetched", "not_modified", "articles_stored", "articles_updated", "matches_new", "errors"}
        values = {k: v for k, v in counts.items() if k in allowed}
        with self.transaction():
            self.db["crawl_runs"].update(run_id, {**values, "ended_at": utc_now(), "exit_reason": exit_reason})

    def record_error(self, run_id: int | None, source: str | None, url: str, error_class: str, message: str) -> None:
        with self.transaction():
            self.db["fetch_errors"].insert(
                {"run_id": run_id, "source": source, "url": url, "error_class": error_class,
                 "message": message[:2000], "at": utc_now()}
            )

    # -- articles ---------------------------------------------------------------------

    def known_url(self, url: str) -> bool:
        """True when an article was already stored under this URL (any alias of it)."""
        return self.db.execute("select 1 from article_urls where url = ?", [url]).fetchone() is not None

    def save_article(
        self,
        processed: ProcessedArticle,
        recipients_for_rule: RecipientsForRule | None = None,
        refresh: bool = False,
    ) -> SavedArticle | None:
        """Store an article with its matches and their outbox rows, in one transaction.

        The same canonical URL is one row; a later fetch with different text is an
        update (recorded in `article_updates`) and never re-flags or re-alerts.
        """
        article = processed.article
        if article is None:
            return None
        now = utc_now()
        digest = processed.content_hash or text_hash(article.text)
        aliases = {processed.page_url, article.url, article.canonical_url}
        with self.transaction():
            existing = self._find_article(article.canonical_url, aliases)
            if existing is not None:
                article_id, old_hash = existing
                self._add_aliases(article_id, aliases)
                if old_hash == digest or not refresh:
                    return SavedArticle(article_id, False, False, 0)
                self.db["article_updates"].insert(
                    {"article_id": article_id, "changed_at": now, "old_hash": old_hash, "new_hash": digest}
                )
                self.db["articles"].update(
                    article_id,
                    {"title": article.title, "text": article.text, "content_hash": digest, "updated_at": now},
                )
                return SavedArticle(article_id, False, True, 0)
            table = self.db["articles"]
            table.insert(
                {
                    "url": article.canonical_url,
                    "fetched_url": article.url,
                    "source": processed.source,
                    "title": article.title,
                    "text": article.text,
                    "language": article.language,
                    "author": article.author,
                    "published": article.published,
                    "site_name": article.site_name,
                    "summary_only": int(article.summary_only),
                    "missing": json.dumps(list(article.missing)),
                    "state_affiliated": int(processed.state_affiliated),
                    "content_hash": digest,
                    "fetched_at": now,
                }
            )
            article_id = int(table.last_pk)
            self._add_aliases(article_id, aliases)
            added = self._insert_matches(article_id, processed.matches, recipients_for_rule, now)
            return SavedArticle(article_id, True, False, added)

    def _find_article(self, canonical: str, aliases: set[str]) -> tuple[int, str] | None:
        row = self.db.execute("select id, content_hash from articles where url = ?", [canonical]).fetchone()
        if row:
            return int(row[0]), row[1]
        for url in aliases:
            row = self.db.execute(
                "select a.id, a.content_hash from article_urls u join articles a on a.id = u.article_id where u.url = ?",
                [url],
            ).fetchone()
            if row:
                return int(row[0]), row[1]
        return None

    def _add_aliases(self, article_id: int, aliases: set[str]) -> None:
        for url in aliases:
            if url:
                self.db.execute("insert or ignore into article_urls (url, article_id) values (?, ?)", [url, article_id])

    def _insert_matches(
        self, article_id: int, matches: Iterable[Match], recipients_for_rule: RecipientsForRule | None, now: str
    ) -> int:
        added = 0
        for match in matches:
            cursor = self.db.execute(
                "insert or ignore into matches (article_id, rule, score, terms, snippet, highlights, suppliers,"
                " recipients, weapons, matched_at) values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    article_id,
                    match.rule,
                    match.score,
                    json.dumps([asdict(t) for t in match.terms], ensure_ascii=False),
                    match.snippet,
                    json.dumps([list(h) for h in match.highlights]),
                    json.dumps(list(match.suppliers), ensure_ascii=False),
                    json.dumps(list(match.recipients), ensure_ascii=False),
                    json.dumps(list(match.weapons), ensure_ascii=False),
                    now,
                ],
            )
            if cursor.rowcount != 1:
                continue
            added += 1
            match_id = cursor.lastrowid
            for address, mode in (recipients_for_rule(match.rule) if recipients_for_rule else ()):
                self.queue_alert(match_id, address, mode, now)
        return added

    def queue_alert(self, match_id: int, address: str, mode: str, now: str | None = None) -> None:
        """One outbox row per (match, recipient); queuing twice is a no-op."""
        self.db.execute(
            "insert or ignore into outbox (match_id, recipient, mode, status, attempts, created_at)"
            " values (?, ?, ?, 'pending', 0, ?)",
            [match_id, address, mode, now or utc_now()],
        )

    def replace_matches(self, article_id: int, rule_names: Iterable[str], matches: Iterable[Match]) -> tuple[int, int]:
        """Re-run of the rules over a stored article: returns (added, removed).

        Matches of the named rules that no longer fire are removed (with outbox rows still
        pending); new ones are added without queuing alerts for old news.
        """
        rule_names = list(rule_names)
        matches = list(matches)
        keep = {m.rule for m in matches}
        with self.transaction():
            removed = 0
            for rule in rule_names:
                if rule in keep:
                    continue
                for (match_id,) in self.db.execute(
                    "select id from matches where article_id = ? and rule = ?", [article_id, rule]
                ).fetchall():
                    self.db.execute("delete from outbox where match_id = ? and status != 'sent'", [match_id])
                    self.db.execute("update outbox set match_id = null where match_id = ?", [match_id])
                    self.db.execute("delete from matches where id = ?", [match_id])
                    removed += 1
            added = self._insert_matches(article_id, matches, None, utc_now())
        return added, removed


class StoreError(RuntimeError):
    """The database cannot be opened or used."""
