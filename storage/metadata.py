"""Datasette metadata and settings for armswatch's database, read from storage/datasette.toml.

The TOML file holds what a reviewer may change (titles, descriptions, sorts, facets, the SQL
of saved queries); this module only shapes it into what Datasette expects and checks that
it still fits the schema, so a renamed column fails a test instead of a facet vanishing.
"""

from __future__ import annotations

import copy
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

DATABASE_NAME = "armswatch"
METADATA_FILE = Path(__file__).with_name("datasette.toml")

# Keys of a table's metadata that Datasette understands and we use.
TABLE_KEYS = {
    "title", "description", "sort", "sort_desc", "label_column", "fts_table", "fts_pk",
    "searchmode", "facets", "columns", "hidden", "size",
}
QUERY_KEYS = {"title", "description", "sql", "hide_sql", "params"}


class MetadataError(ValueError):
    """storage/datasette.toml does not describe a usable Datasette configuration."""


@cache
def _load(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise MetadataError(f"{path}: {exc}") from exc


def datasette_metadata(path: Path = METADATA_FILE, database: str = DATABASE_NAME) -> dict[str, Any]:
    """The metadata dict for `Datasette(metadata=...)`: titles, descriptions, tables, queries."""
    data = _load(path)
    tables: dict[str, dict[str, Any]] = {}
    for name, table in data.get("tables", {}).items():
        unknown = set(table) - TABLE_KEYS
        if unknown:
            raise MetadataError(f"{path}: [tables.{name}]: unknown keys {sorted(unknown)}")
        tables[name] = copy.deepcopy(table)
    for name in data.get("hidden", []):
        tables.setdefault(name, {})["hidden"] = True
    queries: dict[str, dict[str, Any]] = {}
    for name, query in data.get("queries", {}).items():
        unknown = set(query) - QUERY_KEYS
        if unknown or "sql" not in query:
            raise MetadataError(f"{path}: [queries.{name}]: needs sql; unknown keys {sorted(unknown)}")
        queries[name] = {**query, "sql": query["sql"].strip()}
    return {
        "title": data.get("title", DATABASE_NAME),
        "description": data.get("description", ""),
        "databases": {database: {**copy.deepcopy(data.get("database", {})), "tables": tables, "queries": queries}},
    }


def datasette_settings(path: Path = METADATA_FILE) -> dict[str, Any]:
    """Datasette settings (time limits, page size) from the [settings] table."""
    return dict(_load(path).get("settings", {}))


def schema_problems(conn: Any, metadata: dict[str, Any], database: str = DATABASE_NAME) -> list[str]:
    """Tables, columns and facets the metadata names that the database does not have.

    `conn` is a sqlite3 connection to a migrated armswatch database.
    """
    problems = []
    existing = {row[0] for row in conn.execute("select name from sqlite_master where type in ('table', 'view')")}
    for name, table in metadata["databases"][database]["tables"].items():
        if name not in existing:
            if set(table) != {"hidden"}:  # hiding a table that is not there yet is harmless
                problems.append(f"table {name} does not exist")
            continue
        columns = {row[1] for row in conn.execute(f"pragma table_info([{name}])")}
        named = set(table.get("columns", {}))
        for key in ("sort", "sort_desc", "label_column"):
            if key in table:
                named.add(table[key])
        for facet in table.get("facets", []):
            named.add(facet if isinstance(facet, str) else next(iter(facet.values())))
        problems += [f"{name}.{column} does not exist" for column in sorted(named - columns)]
        fts = table.get("fts_table")
        if fts and fts not in existing:
            problems.append(f"{name}: full-text table {fts} does not exist")
    return problems
