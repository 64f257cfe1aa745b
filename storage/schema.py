"""The schema, as a list of named migrations applied in order and recorded in `migrations`.

A migration is never edited once released: the schema evolves by appending a new one.
Only storage.store calls `migrate`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone

import sqlite_utils


def _initial(db: sqlite_utils.Database) -> None:
    db.executescript(
        """
        create table if not exists sources (
            name text primary key,
            url text not null,
            type text not null,
            language text,
            country text,
            section text,
            state_affiliated integer not null default 0,
            enabled integer not null default 1,
            configured_interval real,
            etag text,
            last_modified text,
            body_hash text,
            added_at text
        );
        create table if not exists source_health (
            source text primary key,
            last_attempt text,
            last_success text,
            status text,
            http_status integer,
            error text,
            consecutive_failures integer not null default 0,
            items_seen integer not null default 0,
            items_new integer not null default 0,
            last_new_article text,
            poll_interval real,
            last_run_id integer
        );
        create table if not exists articles (
            id integer primary key,
            url text not null unique,
            fetched_url text,
            source text,
            title text,
            text text,
            language text,
            author text,
            published text,
            site_name text,
            summary_only integer not null default 0,
            missing text,
            state_affiliated integer not null default 0,
            content_hash text,
            fetched_at text not null,
            updated_at text,
            story_id integer
        );
        create index if not exists articles_source on articles (source);
        create index if not exists articles_published on articles (published);
        create index if not exists articles_fetched_at on articles (fetched_at);
        create table if not exists article_urls (
            url text primary key,
            article_id integer not null references articles(id)
        );
        create table if not exists article_updates (
            id integer primary key,
            article_id integer not null references articles(id),
            changed_at text not null,
            old_hash text,
            new_hash text
        );
        create table if not exists matches (
            id integer primary key,
            article_id integer not null references articles(id),
            rule text not null,
            score real,
            terms text,
            snippet text,
            highlights text,
            suppliers text,
            recipients text,
            weapons text,
            matched_at text not null,
            unique (article_id, rule)
        );
        create index if not exists matches_matched_at on matches (matched_at);
        create table if not exists outbox (
            id integer primary key,
            match_id integer,
            recipient text not null,
            mode text not null default 'instant',
            status text not null default 'pending',
            attempts integer not null default 0,
            next_attempt_at text,
            sent_at text,
            message_id text,
            error text,
            created_at text not null,
            unique (match_id, recipient)
        );
        create index if not exists outbox_status on outbox (status, next_attempt_at);
        create table if not exists crawl_runs (
            id integer primary key,
            trigger text,
            pid integer,
            started_at text not null,
            ended_at text,
            sources integer,
            feeds integer,
            pages_fetched integer,
            not_modified integer,
            articles_stored integer,
            articles_updated integer,
            matches_new integer,
            errors integer,
            exit_reason text
        );
        create table if not exists fetch_errors (
            id integer primary key,
            run_id integer,
            source text,
            url text,
            error_class text,
            message text,
            at text not null
        );
        """
    )


def _full_text_search(db: sqlite_utils.Database) -> None:
    db["articles"].enable_fts(["title", "text"], fts_version="FTS5", create_triggers=True, replace=True)


def _alerts_state(db: sqlite_utils.Database) -> None:
    """Digest schedule per recipient, and source-health notices with their own small outbox."""
    db.executescript(
        """
        create table if not exists alert_digests (
            recipient text not null,
            mode text not null,
            last_slot text,
            last_sent_at text,
            message_id text,
            primary key (recipient, mode)
        );
        create table if not exists health_notices (
            id integer primary key,
            source text not null,
            kind text not null,
            event text not null,
            detail text,
            created_at text not null
        );
        create index if not exists health_notices_source on health_notices (source, kind, id);
        create table if not exists health_notice_outbox (
            notice_id integer not null references health_notices(id),
            recipient text not null,
            status text not null default 'pending',
            attempts integer not null default 0,
            next_attempt_at text,
            sent_at text,
            message_id text,
            error text,
            created_at text not null,
            primary key (notice_id, recipient)
        );
        """
    )


def _match_view(db: sqlite_utils.Database) -> None:
    """One row per match with its article's title, link and source, so Datasette can facet and sort both."""
    db.execute(
        """
        create view if not exists match_view as
        select
            m.id as match_id,
            m.matched_at,
            a.title,
            a.url,
            a.source,
            a.language,
            a.published,
            a.state_affiliated,
            m.rule,
            m.score,
            m.suppliers,
            m.recipients,
            m.weapons,
            trim(
                iif(json_array_length(m.suppliers) > 0,
                    'from ' || (select group_concat(value, ', ') from json_each(m.suppliers)) || '; ', '')
                || iif(json_array_length(m.recipients) > 0,
                    'to ' || (select group_concat(value, ', ') from json_each(m.recipients)) || '; ', '')
                || iif(json_array_length(m.weapons) > 0,
                    (select group_concat(value, ', ') from json_each(m.weapons)), ''),
                '; '
            ) as tags,
            m.snippet,
            m.article_id
        from matches m
        join articles a on a.id = m.article_id
        """
    )


def _stories(db: sqlite_utils.Database) -> None:
    """Story clusters: one row per story, why each article joined it, and the fingerprint index.

    `story_keys` holds LSH band keys and designation/number/name keys (64-bit hashes), so
    finding candidates for a new article is an index lookup, not a scan of the archive.
    """
    db.executescript(
        """
        create table if not exists stories (
            id integer primary key,
            first_seen text not null,
            first_source text,
            first_article_id integer,
            headline text,
            tags text,
            suppliers text,
            recipients text,
            weapons text,
            article_count integer not null default 0,
            source_count integer not null default 0,
            sources text,
            languages text,
            last_seen text,
            alerted_at text,
            alerted_article_id integer
        );
        create index if not exists stories_first_seen on stories (first_seen);
        create table if not exists story_links (
            article_id integer primary key references articles(id),
            story_id integer not null references stories(id),
            method text not null,
            joined_via integer,
            score real,
            signals text,
            linked_at text not null
        );
        create index if not exists story_links_story on story_links (story_id);
        create table if not exists story_fingerprints (
            article_id integer primary key references articles(id),
            seen_at text not null,
            language text,
            title text,
            minhash blob not null,
            designations text,
            numbers text,
            names text,
            tags text
        );
        create table if not exists story_keys (
            key integer not null,
            article_id integer not null,
            seen_at text not null
        );
        create index if not exists story_keys_lookup on story_keys (key, seen_at);
        create index if not exists story_keys_article on story_keys (article_id);
        create index if not exists articles_story on articles (story_id);
        """
    )


def _full_text_follows_text_only(db: sqlite_utils.Database) -> None:
    """sqlite-utils' update trigger re-indexes an article on any change, and every new article
    changes once more when it joins a story: only a new title or text needs the index."""
    db.executescript(
        """
        drop trigger if exists articles_au;
        create trigger articles_au after update of title, text on articles begin
          insert into articles_fts (articles_fts, rowid, title, text) values ('delete', old.rowid, old.title, old.text);
          insert into articles_fts (rowid, title, text) values (new.rowid, new.title, new.text);
        end;
        """
    )


def _compact_story_keys(db: sqlite_utils.Database) -> None:
    """`story_keys` as one B-tree on (key, seen, article_id), times in Unix seconds.

    Each article adds about 80 random keys. With a rowid table, two indexes and 25-character
    ISO times, an entry took some 90 bytes in three B-trees; one compact tree is about a fifth
    of that (a 2,000-article crawl's database 35 -> 24 MB, its writes 2.27 -> 1.65 GB), and the
    candidate lookup reads it without a second seek. Nothing deletes keys by
    article (an article's keys are written once, with its story link), so no article index.
    It runs inside `migrate`'s transaction and is a no-op on a table already compact: a crash
    leaves the old table or the new one, never neither.
    """
    if "seen" in db["story_keys"].columns_dict:
        return
    for statement in (
        """create table story_keys_compact (
            key integer not null,
            seen integer not null,
            article_id integer not null,
            primary key (key, seen, article_id)
        ) without rowid""",
        """insert or ignore into story_keys_compact (key, seen, article_id)
            select key, cast(strftime('%s', seen_at) as integer), article_id from story_keys""",
        "drop table story_keys",
        "alter table story_keys_compact rename to story_keys",
    ):
        db.execute(statement)  # statements, not a script: a script would commit the migration's transaction


def _web_text_on_one_line(db: sqlite_utils.Database) -> None:
    """Titles, site names, authors, headlines and match snippets stored before they were cleaned
    on the way in (crawler.safe_text) lose their control characters: one NUL in a title (which
    its matches' snippets begin with) made the Atom feed of matches fail for every subscriber,
    and an escape sequence took over the terminal of `armswatch stories`. One pass over these
    short columns; a title changed is re-indexed; a snippet keeps its length, so that its
    highlights still fall on the matched terms."""
    from crawler.safe_text import blanked, one_line

    for table, columns, clean in (
        ("articles", ("title", "site_name", "author"), one_line),
        ("stories", ("headline",), one_line),
        ("matches", ("snippet",), blanked),
    ):
        if table not in db.table_names():
            continue
        for row_id, *values in db.execute(f"select id, {', '.join(columns)} from {table}").fetchall():
            cleaned = [clean(value) if isinstance(value, str) else value for value in values]
            if cleaned != values:
                assignments = ", ".join(f"{column} = ?" for column in columns)
                db.execute(f"update {table} set {assignments} where id = ?", [*cleaned, row_id])


def _child_sitemap_validators(db: sqlite_utils.Database) -> None:
    """The validators of each sitemap a sitemap index lists: an archive's index names up to 50,000
    sitemaps of up to 50 MB, nearly all of them the same from one run to the next."""
    db.executescript(
        """
        create table if not exists child_validators (
            source text not null,
            url text not null,
            etag text,
            last_modified text,
            body_hash text,
            primary key (source, url)
        );
        """
    )


def _host_rests(db: sqlite_utils.Database) -> None:
    """Hosts that asked, with a long Retry-After, to be left alone until a time past the run that
    heard it: the next runs do not ask them before then."""
    db.executescript(
        """
        create table if not exists host_rests (
            host text primary key,
            until text not null,
            status integer not null,
            reason text not null
        );
        """
    )


MIGRATIONS: list[tuple[str, Callable[[sqlite_utils.Database], None]]] = [
    ("0001_initial", _initial),
    ("0002_articles_fts", _full_text_search),
    ("0003_alerts_state", _alerts_state),
    ("0004_match_view", _match_view),
    ("0005_stories", _stories),
    ("0006_full_text_follows_text_only", _full_text_follows_text_only),
    ("0007_compact_story_keys", _compact_story_keys),
    ("0008_web_text_on_one_line", _web_text_on_one_line),
    ("0009_child_sitemap_validators", _child_sitemap_validators),
    ("0010_host_rests", _host_rests),
]


def migrate(db: sqlite_utils.Database) -> list[str]:
    """Apply the migrations this database has not seen yet; return their names."""
    db.execute("create table if not exists migrations (name text primary key, applied_at text not null)")
    done = {row[0] for row in db.execute("select name from migrations").fetchall()}
    applied = []
    for name, step in MIGRATIONS:
        if name in done:
            continue
        step(db)
        db.execute(
            "insert into migrations (name, applied_at) values (?, ?)",
            [name, datetime.now(timezone.utc).isoformat(timespec="seconds")],
        )
        applied.append(name)
    return applied
