"""ArticleStore: the one owner of armswatch's SQLite schema and of every write to it.

Other modules ask it; none of them writes SQL of its own. Writes that belong together
(an article, its matches and their outbox rows) commit in one `BEGIN IMMEDIATE`
transaction, so a crash mid-run loses nothing the next run cannot finish, and nothing
is flagged or queued twice (unique keys make every write idempotent).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import sqlite_utils

from crawler.items import Match, ProcessedArticle, text_hash
from crawler.safe_text import shown
from crawler.urls import address_variants
from storage.schema import migrate

BUSY_TIMEOUT_MS = 30_000


def utc_now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def _unix_seconds(moment: datetime | str) -> int:
    """`story_keys` keeps times as integers: 4 bytes in each of its many entries, not 25.
    A time without a zone is UTC, as everywhere in the store."""
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    return int((moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp())


@dataclass(frozen=True)
class SavedArticle:
    article_id: int
    is_new: bool
    is_update: bool
    new_matches: int


# Story candidates: the newest articles of each index key, counted per article by SQLite. Keys go
# 50 to a statement, padded with NULL (which matches nothing), so the text never changes.
_KEYS_PER_LOOKUP = 50
_CANDIDATES_SQL = (
    "select article_id, count(*) from ("
    + " union all ".join(
        ["select * from (select article_id from story_keys where key = ? and seen between ? and ?"
         " order by seen desc limit ?)"] * _KEYS_PER_LOOKUP
    )
    + ") where article_id != ? group by article_id"
)


_STORY_TAGS = ("suppliers", "recipients", "weapons")  # the rule tags a story sums up
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
            # Each article is written in a savepoint, whose copies of the pages it may restore
            # SQLite writes to a temporary file: about 500 KB an article, 0.97 of the 1.65 GB a
            # 2,000-article crawl wrote. In memory they are the same copies without the system
            # calls, dropped when the article's savepoint ends. Set after the migrations: one that
            # rewrites a table fills temporary storage in proportion to it, which must stay on
            # disk (150 MB of memory for an archive of 20,000 articles).
            conn.execute("PRAGMA temp_store = MEMORY")
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

    def query_one(self, sql: str, params: Iterable[Any] | dict[str, Any] = ()) -> dict[str, Any] | None:
        """The first row, or None (the statement is read to its end: no cursor stays open)."""
        rows = self.query(sql, params)
        return rows[0] if rows else None

    # The crawl writes thousands of rows a minute: these say in plain SQL what sqlite-utils'
    # insert/upsert/update say, without the schema introspection those run on every call.

    def _insert(self, table: str, row: dict[str, Any]) -> int:
        """Insert one row; returns its rowid."""
        columns = ", ".join(row)
        marks = ", ".join("?" * len(row))
        return int(self.db.execute(f"insert into {table} ({columns}) values ({marks})", list(row.values())).lastrowid)

    def _upsert(self, table: str, row: dict[str, Any], key: str) -> None:
        """Insert one row, or update the row with the same `key`."""
        columns = ", ".join(row)
        marks = ", ".join("?" * len(row))
        updates = ", ".join(f"{column} = excluded.{column}" for column in row if column != key)
        self.db.execute(
            f"insert into {table} ({columns}) values ({marks}) on conflict ({key}) do update set {updates}",
            list(row.values()),
        )

    def _update(self, table: str, key: str, value: Any, changes: dict[str, Any]) -> None:
        assignments = ", ".join(f"{column} = ?" for column in changes)
        self.db.execute(f"update {table} set {assignments} where {key} = ?", [*changes.values(), value])

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

    def child_validators(self, source: str, url: str) -> dict[str, str | None]:
        """ETag, Last-Modified and body hash a child sitemap of `source` was last read in full with."""
        row = self.db.execute(
            "select etag, last_modified, body_hash from child_validators where source = ? and url = ?", [source, url]
        ).fetchone()
        return dict(zip(("etag", "last_modified", "body_hash"), row or (None, None, None)))

    def set_child_validators(self, source: str, url: str, etag: str | None, last_modified: str | None,
                             body_hash: str | None) -> None:
        with self.transaction():
            if body_hash is None:  # to be read in full next time
                self.db.execute("delete from child_validators where source = ? and url = ?", [source, url])
            else:
                self.db.execute(
                    "insert or replace into child_validators (source, url, etag, last_modified, body_hash)"
                    " values (?, ?, ?, ?, ?)",
                    [source, url, etag, last_modified, body_hash],
                )

    def host_rests(self) -> dict[str, tuple[str, int, str]]:
        """Hosts resting now: host -> (until, HTTP status, why), as rest_host recorded them."""
        rows = self.db.execute("select host, until, status, reason from host_rests where until > ?", [utc_now()])
        return {host: (until, status, reason) for host, until, status, reason in rows}

    def rest_host(self, host: str, until: str, status: int, reason: str) -> None:
        with self.transaction():
            self.db.execute(
                "insert or replace into host_rests (host, until, status, reason) values (?, ?, ?, ?)",
                [host, until, status, shown(reason)],
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
    ) -> tuple[int, str | None]:
        """Update a source's health after one fetch of its feed, sitemap or listing page.

        `status` is "ok", "not modified", "unchanged", or an error class such as
        "timeout", "DNS", "refused", "HTTP 500", "parse error", "robots denied".
        Returns (consecutive failures, last success) as they were before.
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
                "error": None if error is None else shown(error),
                "consecutive_failures": failures,
                "items_seen": items_seen,
                "items_new": items_new,
                "last_new_article": (current[2] if current else None),
                "last_run_id": run_id,
            }
            self.db["source_health"].upsert(row, pk="source")
        return (current[0], current[1]) if current else (0, None)

    def record_source_problems(
        self, name: str, *, status: str, error: str, failed: bool, before: tuple[int, str | None], run_id: int | None
    ) -> None:
        """The first document of a source was read, further ones (child sitemaps, listing pages,
        announced feeds) failed or came damaged. `failed`: the run got no item from the source,
        so it counts as a failed run after all; `before` is what record_source_result returned."""
        error = shown(error)
        with self.transaction():
            if failed:
                self.db.execute(
                    "update source_health set status = ?, error = ?, consecutive_failures = ?, last_success = ?"
                    " where source = ? and last_run_id is ?",
                    [status, error, before[0] + 1, before[1], name, run_id],
                )
            else:
                self.db.execute(
                    "update source_health set status = ?, error = ? where source = ? and last_run_id is ?",
                    [status, error, name, run_id],
                )

    def add_items_new(self, name: str, count: int = 1) -> None:
        """Count a new article against the source that listed it (its health row)."""
        with self.transaction():
            self.db.execute(
                "update source_health set items_new = items_new + ?, last_new_article = ? where source = ?",
                [count, utc_now(), name],
            )

    # -- source types (sitemaps, listings, discovered feeds) ------------------------------

    def add_items_seen(self, name: str, count: int) -> None:
        """Count the items of a source's further documents (child sitemaps, listing pages)."""
        with self.transaction():
            self.db.execute(
                "update source_health set items_seen = items_seen + ? where source = ?", [count, name]
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
                {"run_id": run_id, "source": source, "url": shown(url), "error_class": error_class,
                 "message": shown(message)[:2000], "at": utc_now()}
            )

    def runs_failing(self, url: str) -> int:
        """In how many crawl runs fetching this URL failed."""
        return self.db.execute("select count(distinct run_id) from fetch_errors where url = ?", [url]).fetchone()[0]

    # -- scheduling: runs that never finished ------------------------------------------

    def abandon_runs(self, exit_reason: str = "killed", pid: int | None = None) -> list[int]:
        """Close crawl_runs rows still 'running' whose process died; return their ids.

        Call it only while holding the crawl lock (crawler.locking): then no other crawl
        of this database is alive, so every 'running' row (or the one of `pid`) is dead.
        """
        sql = "select id from crawl_runs where exit_reason = 'running'"
        params: list[Any] = []
        if pid is not None:
            sql += " and pid = ?"
            params.append(pid)
        with self.transaction():
            ids = [row[0] for row in self.db.execute(sql, params).fetchall()]
            for run_id in ids:
                self.db["crawl_runs"].update(run_id, {**self._traces_of_run(run_id), "exit_reason": exit_reason})
        return ids

    def _traces_of_run(self, run_id: int) -> dict[str, Any]:
        """What a dead run left behind, for its row: articles and matches stored and errors recorded
        before the next run started, and the time of its last write as its end (not the time its
        row is closed, maybe hours later)."""
        started = self.db.execute("select started_at from crawl_runs where id = ?", [run_id]).fetchone()[0]
        following = self.db.execute("select min(started_at) from crawl_runs where id > ?", [run_id]).fetchone()[0]
        window = [started, following or "9999"]
        stored, last_article = self.db.execute(
            "select count(*), max(fetched_at) from articles where fetched_at >= ? and fetched_at < ?", window
        ).fetchone()
        matches = self.db.execute("select count(*) from matches where matched_at >= ? and matched_at < ?", window).fetchone()[0]
        errors, last_error = self.db.execute("select count(*), max(at) from fetch_errors where run_id = ?", [run_id]).fetchone()
        return {"articles_stored": stored, "matches_new": matches, "errors": errors,
                "ended_at": max(value for value in (started, last_article, last_error) if value)}

    # -- articles ---------------------------------------------------------------------

    def known_urls(self, urls: Iterable[str]) -> set[str]:
        """The URLs of `urls` an article was already stored under: one statement per 500, so that a
        sitemap of 50,000 entries costs a hundred lookups, not half a million."""
        unique = list(dict.fromkeys(urls))
        known: set[str] = set()
        for start in range(0, len(unique), 500):
            chunk = unique[start : start + 500]
            marks = ",".join("?" * len(chunk))
            known.update(row[0] for row in self.db.execute(f"select url from article_urls where url in ({marks})", chunk))
        return known

    def save_article(
        self,
        processed: ProcessedArticle,
        recipients_for_rule: RecipientsForRule | None = None,
        refresh: bool = False,
    ) -> SavedArticle | None:
        """Store an article with its matches and their outbox rows, in one transaction.

        The same canonical URL is one row; a later fetch with different text (asked for with
        `refresh`) is an update, recorded in `article_updates`. A rule the new text matches for
        the first time flags it and alerts once; one that had matched is not flagged again.
        """
        article = processed.article
        if article is None:
            return None
        now = utc_now()
        digest = processed.content_hash or text_hash(article.text)
        aliases = {processed.page_url, article.url, article.canonical_url}
        # the page's other versions (AMP) make later listings of them known; they never make this
        # page another one's: a CMS that gives every page the same AMP link must not merge them
        also_known = aliases | set(article.other_addresses)
        with self.transaction():
            existing = self._find_article(article.canonical_url, aliases)
            if existing is not None:
                article_id, old_hash = existing
                self._add_aliases(article_id, also_known)
                if old_hash == digest or not refresh:
                    return SavedArticle(article_id, False, False, 0)
                self._insert(
                    "article_updates", {"article_id": article_id, "changed_at": now, "old_hash": old_hash, "new_hash": digest}
                )
                self._update(
                    "articles", "id", article_id,
                    {"title": article.title, "text": article.text, "content_hash": digest, "updated_at": now},
                )
                added = self._insert_matches(article_id, processed.matches, recipients_for_rule, now)
                return SavedArticle(article_id, False, True, added)
            article_id = self._insert(
                "articles",
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
                },
            )
            self._add_aliases(article_id, also_known)
            added = self._insert_matches(article_id, processed.matches, recipients_for_rule, now)
            return SavedArticle(article_id, True, False, added)

    def _find_article(self, canonical: str, aliases: set[str]) -> tuple[int, str] | None:
        """The stored article under the canonical URL, else under an alias, else under a variant of
        either (another scheme, `www.`, a trailing slash: crawler.urls.address_variants), which
        is how the spider decides what is known; a refresh fetches known pages under the address
        listed now, and that must update the article, not add a second one."""
        row = self.db.execute("select id, content_hash from articles where url = ?", [canonical]).fetchone()
        if row:
            return int(row[0]), row[1]
        listed = [url for url in (canonical, *sorted(alias for alias in aliases if alias)) if url]
        addresses = list(dict.fromkeys(listed + [variant for url in listed for variant in address_variants(url)]))
        marks = ",".join("?" * len(addresses))
        found = {
            url: (int(article_id), content_hash)
            for url, article_id, content_hash in self.db.execute(
                "select u.url, a.id, a.content_hash from article_urls u join articles a on a.id = u.article_id"
                f" where u.url in ({marks})",
                addresses,
            )
        }
        return next((found[url] for url in addresses if url in found), None)  # the closest address first

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

    # -- alerts outbox -------------------------------------------------------------------
    # Rows move pending -> sent | failed | suppressed; one email carries outbox rows (matches)
    # and health notices for one recipient, and its rows change state together, in one
    # transaction committed right after the mail server's answer.

    def due_alerts(self, now: str) -> list[dict[str, Any]]:
        """Pending outbox rows whose retry time has come, with their match and article."""
        return self.query(
            "select o.id as outbox_id, o.recipient as address, o.mode, o.attempts, o.next_attempt_at,"
            " o.created_at, o.match_id, m.rule, m.score, m.terms, m.snippet, m.highlights, m.suppliers,"
            " m.recipients as tag_recipients, m.weapons, m.matched_at, a.id as article_id, a.title, a.url,"
            " a.source, a.published, a.language, a.state_affiliated, a.fetched_at, a.story_id,"
            " s.headline as story_headline"
            " from outbox o join matches m on m.id = o.match_id join articles a on a.id = m.article_id"
            " left join stories s on s.id = a.story_id"
            " where o.status = 'pending' and (o.next_attempt_at is null or o.next_attempt_at <= ?)"
            " order by o.id",
            [now],
        )

    def due_health_notices(self, now: str) -> list[dict[str, Any]]:
        """Health notices not yet delivered to a recipient, whose retry time has come."""
        return self.query(
            "select d.notice_id, d.recipient as address, d.attempts, d.created_at, n.source, n.kind, n.event,"
            " n.detail, n.created_at as noticed_at from health_notice_outbox d"
            " join health_notices n on n.id = d.notice_id"
            " where d.status = 'pending' and (d.next_attempt_at is null or d.next_attempt_at <= ?)"
            " order by d.notice_id",
            [now],
        )

    def mark_email_sent(
        self,
        address: str,
        outbox_ids: Iterable[int],
        notice_ids: Iterable[int],
        message_id: str,
        now: str,
        digest: tuple[str, str] | None = None,
        alerted_match_ids: Iterable[int] = (),
    ) -> None:
        """The server accepted the email: its rows are sent; `digest` = (mode, slot) it covered.

        The stories of `alerted_match_ids` count as alerted in the same transaction: a crash
        between the two would let a copy of an alerted story alert again."""
        with self.transaction():
            for match_id in alerted_match_ids:
                self.mark_story_alerted(match_id, now)
            for outbox_id in outbox_ids:
                self.db.execute(
                    "update outbox set status = 'sent', sent_at = ?, message_id = ?, error = null,"
                    " next_attempt_at = null, attempts = attempts + 1 where id = ?",
                    [now, message_id, outbox_id],
                )
            for notice_id in notice_ids:
                self.db.execute(
                    "update health_notice_outbox set status = 'sent', sent_at = ?, message_id = ?, error = null,"
                    " next_attempt_at = null, attempts = attempts + 1 where notice_id = ? and recipient = ?",
                    [now, message_id, notice_id, address],
                )
            if digest is not None:
                self.db["alert_digests"].upsert(
                    {"recipient": address, "mode": digest[0], "last_slot": digest[1], "last_sent_at": now,
                     "message_id": message_id},
                    pk=("recipient", "mode"),
                )

    def mark_email_failed(
        self,
        address: str,
        outbox_ids: Iterable[int],
        notice_ids: Iterable[int],
        error: str,
        next_attempt: Callable[[int], str | None],
    ) -> int:
        """The email did not go: count the attempt; `next_attempt(attempts)` gives the retry
        time, or None to give up (status `failed`). Returns how many rows were given up."""
        given_up = 0
        error = error[:2000]
        with self.transaction():
            targets = [("outbox", "id = ?", [i]) for i in outbox_ids] + [
                ("health_notice_outbox", "notice_id = ? and recipient = ?", [i, address]) for i in notice_ids
            ]
            for table, where, params in targets:
                row = self.db.execute(f"select attempts from {table} where {where}", params).fetchone()
                if row is None:
                    continue
                attempts = int(row[0]) + 1
                retry_at = next_attempt(attempts)
                status = "pending" if retry_at else "failed"
                given_up += status == "failed"
                self.db.execute(
                    f"update {table} set status = ?, attempts = ?, next_attempt_at = ?, error = ? where {where}",
                    [status, attempts, retry_at, error, *params],
                )
        return given_up

    def suppress_alerts(self, outbox_ids: Iterable[int], reason: str) -> None:
        """Outbox rows no longer worth an email (e.g. their story was already alerted)."""
        with self.transaction():
            for outbox_id in outbox_ids:
                self.db.execute(
                    "update outbox set status = 'suppressed', error = ?, next_attempt_at = null where id = ?",
                    [reason, outbox_id],
                )

    def pending_alert_count(self) -> int:
        """Outbox rows still waiting (for their digest time, or for a retry)."""
        return int(self.db.execute("select count(*) from outbox where status = 'pending'").fetchone()[0])

    def digest_state(self) -> dict[tuple[str, str], dict[str, Any]]:
        """The last digest sent to each recipient, by (address, mode)."""
        return {(row["recipient"], row["mode"]): row for row in self.query("select * from alert_digests")}

    def last_crawl_time(self) -> str | None:
        row = self.db.execute("select max(coalesce(ended_at, started_at)) from crawl_runs").fetchone()
        return row[0] if row else None

    def health_watch(self) -> list[dict[str, Any]]:
        """Every enabled source with what its health notices need to know."""
        return self.query(
            "select s.name as source, s.added_at, h.consecutive_failures, h.status, h.error, h.last_success,"
            " h.last_new_article, h.last_attempt from sources s left join source_health h on h.source = s.name"
            " where s.enabled = 1 order by s.name"
        )

    def open_health_problems(self) -> set[tuple[str, str]]:
        """(source, kind) pairs whose latest notice is a problem not yet followed by a recovery."""
        rows = self.db.execute(
            "select source, kind, event from health_notices n where id = "
            "(select max(id) from health_notices where source = n.source and kind = n.kind)"
        ).fetchall()
        return {(source, kind) for source, kind, event in rows if event == "problem"}

    def add_health_notice(
        self, source: str, kind: str, event: str, detail: str, recipients: Iterable[str], now: str
    ) -> int:
        """Record a source problem (or its recovery) and queue it once for every recipient."""
        with self.transaction():
            table = self.db["health_notices"]
            table.insert({"source": source, "kind": kind, "event": event, "detail": detail, "created_at": now})
            notice_id = int(table.last_pk)
            for address in recipients:
                self.db.execute(
                    "insert or ignore into health_notice_outbox (notice_id, recipient, status, attempts, created_at)"
                    " values (?, ?, 'pending', 0, ?)",
                    [notice_id, address, now],
                )
        return notice_id

    # -- story clustering ----------------------------------------------------------------
    # The decision (which story an article belongs to) lives in crawler.clustering; these
    # methods read what it needs and write its outcome. Fingerprint, index keys, link and
    # story counters of one article are written in one transaction.

    def article_for_story(self, article_id: int) -> dict[str, Any] | None:
        """The fields clustering reads: text, language, source, date, current story."""
        return self.query_one(
            "select id, url, source, site_name, title, text, language, published, fetched_at, story_id"
            " from articles where id = ?",
            [article_id],
        )

    def article_tags(self, article_id: int) -> dict[str, list[str]]:
        """Union of the rule tags of an article's matches: rules, suppliers, recipients, weapons."""
        tags: dict[str, set[str]] = {"rules": set(), "suppliers": set(), "recipients": set(), "weapons": set()}
        for row in self.db.execute(
            "select rule, suppliers, recipients, weapons from matches where article_id = ?", [article_id]
        ).fetchall():
            tags["rules"].add(row[0])
            for name, raw in zip(("suppliers", "recipients", "weapons"), row[1:]):
                tags[name].update(json.loads(raw or "[]"))
        return {name: sorted(values) for name, values in tags.items()}

    def story_key_counts(
        self, keys: Iterable[int], since: datetime, until: datetime, exclude: int, per_key: int = 50
    ) -> dict[int, int]:
        """Articles sharing index keys with a new one, seen in [since, until]: how many keys each.

        At most `per_key` most recent articles per key: the cost of a lookup depends on the keys
        of one article, not on the size of the archive nor on how many copies of a wire story it
        already holds. Counts of lookups over disjoint keys add up to those of one over all.
        """
        shared: dict[int, int] = {}
        keys = list(dict.fromkeys(keys))
        first, last = _unix_seconds(since), _unix_seconds(until)
        for start in range(0, len(keys), _KEYS_PER_LOOKUP):
            chunk = keys[start : start + _KEYS_PER_LOOKUP]
            chunk += [None] * (_KEYS_PER_LOOKUP - len(chunk))  # one statement text: compiled once, then cached
            params = [value for key in chunk for value in (key, first, last, per_key)]
            for article_id, count in self.db.execute(_CANDIDATES_SQL, [*params, exclude]).fetchall():
                shared[article_id] = shared.get(article_id, 0) + count
        return shared

    def story_fingerprints(self, article_ids: Iterable[int]) -> list[dict[str, Any]]:
        """Stored fingerprints of candidate articles, with their source and story."""
        ids = list(article_ids)
        rows: list[dict[str, Any]] = []
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows += self.query(
                "select f.*, a.source, a.story_id from story_fingerprints f join articles a on a.id = f.article_id"
                f" where f.article_id in ({marks}) and a.story_id is not null",
                chunk,
            )
        return rows

    def save_story_link(
        self,
        article_id: int,
        fingerprint_row: dict[str, Any],
        keys: Iterable[int],
        story_id: int | None,
        method: str,
        joined_via: int | None,
        score: float | None,
        signals: dict[str, Any],
    ) -> int:
        """Record an article's fingerprint and its story (a new one when `story_id` is None)."""
        now = utc_now()
        with self.transaction():
            current = self.db.execute("select story_id, source, title from articles where id = ?", [article_id]).fetchone()
            if current and current[0] is not None:
                return int(current[0])
            self._upsert("story_fingerprints", {"article_id": article_id, **fingerprint_row}, "article_id")
            seen = _unix_seconds(fingerprint_row["seen_at"])
            self.db.conn.executemany(
                "insert or ignore into story_keys (key, seen, article_id) values (?, ?, ?)",
                [(key, seen, article_id) for key in keys],
            )
            source, title = (current[1], current[2]) if current else (None, None)
            if story_id is None:
                story_id = self._insert(
                    "stories",
                    {"first_seen": fingerprint_row["seen_at"], "first_source": source, "first_article_id": article_id,
                     "headline": title, "article_count": 0, "source_count": 0},
                )
            self.db.execute("update articles set story_id = ? where id = ?", [story_id, article_id])
            self._upsert(
                "story_links",
                {"article_id": article_id, "story_id": story_id, "method": method, "joined_via": joined_via,
                 "score": score, "signals": json.dumps(signals, ensure_ascii=False, sort_keys=True), "linked_at": now},
                "article_id",
            )
            self._add_to_story(story_id, source, fingerprint_row)
        return story_id

    def _add_to_story(self, story_id: int, source: str | None, fingerprint_row: dict[str, Any]) -> None:
        """Fold one more article into its story's counts, sources, languages, tags and dates.

        The story row already sums up its other articles (articles only ever join a story), so
        this reads one row, not the whole story: a wire story copied by hundreds of outlets costs
        the same per copy as a story of two."""
        story = self.db.execute(
            "select tags, sources, languages, article_count, first_seen, last_seen from stories where id = ?",
            [story_id],
        ).fetchone()
        old_tags, old_sources, old_languages, count, first_seen, last_seen = story
        tags: dict[str, set[str]] = {name: set() for name in _STORY_TAGS}
        for tag_set in (json.loads(old_tags or "{}"), json.loads(fingerprint_row["tags"] or "{}")):
            for name, values in tag_set.items():
                if name in tags:
                    tags[name].update(values)
        sources = sorted(set(json.loads(old_sources or "[]")) | ({source} if source else set()))
        language = fingerprint_row["language"]
        languages = sorted(set(json.loads(old_languages or "[]")) | ({language} if language else set()))
        seen = [value for value in (first_seen, last_seen, fingerprint_row["seen_at"]) if value]
        self._update(
            "stories", "id", story_id,
            {
                "tags": json.dumps({k: sorted(v) for k, v in tags.items()}, ensure_ascii=False),
                "suppliers": json.dumps(sorted(tags["suppliers"]), ensure_ascii=False),
                "recipients": json.dumps(sorted(tags["recipients"]), ensure_ascii=False),
                "weapons": json.dumps(sorted(tags["weapons"]), ensure_ascii=False),
                "article_count": (count or 0) + 1,
                "source_count": len(sources),
                "sources": json.dumps(sources, ensure_ascii=False),
                "languages": json.dumps(languages),
                "first_seen": min(seen) if seen else None,
                "last_seen": max(seen) if seen else None,
            },
        )

    def story_link(self, article_id: int) -> dict[str, Any] | None:
        return self.query_one("select * from story_links where article_id = ?", [article_id])

    def unassigned_articles(self, limit: int = 1000) -> list[int]:
        """Articles without a story yet (saved before clustering existed, or by a crashed run)."""
        return [r[0] for r in self.db.execute(
            "select id from articles where story_id is null order by id limit ?", [limit]
        ).fetchall()]

    def story_of_match(self, match_id: int) -> dict[str, Any] | None:
        """The story of a match's article, with that article's id."""
        return self.query_one(
            "select s.*, m.article_id as match_article_id from matches m join articles a on a.id = m.article_id"
            " join stories s on s.id = a.story_id where m.id = ?",
            [match_id],
        )

    def mark_story_alerted(self, match_id: int, when: str | None = None) -> bool:
        """The alert for this match went out: its story counts as alerted (first alert wins).
        Returns False when the match has no story or the story was already alerted."""
        with self.transaction():
            cursor = self.db.execute(
                "update stories set alerted_at = ?, alerted_article_id = ("
                " select article_id from matches where id = ?)"
                " where alerted_at is null and id = (select a.story_id from matches m join articles a"
                " on a.id = m.article_id where m.id = ?)",
                [when or utc_now(), match_id, match_id],
            )
            return cursor.rowcount == 1

    def story_articles(self, story_id: int) -> list[dict[str, Any]]:
        """Every article of a story with why it joined, oldest first."""
        return self.query(
            "select a.id as article_id, a.title, a.url, a.source, a.language, a.published, a.fetched_at,"
            " l.method, l.score, l.signals, l.joined_via from articles a"
            " left join story_links l on l.article_id = a.id"
            " left join story_fingerprints f on f.article_id = a.id"
            " where a.story_id = ? order by f.seen_at, a.id",
            [story_id],
        )


class StoreError(RuntimeError):
    """The database cannot be opened or used."""
