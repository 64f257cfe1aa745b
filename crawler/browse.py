"""`armswatch browse`: Datasette on the live database, configured by storage/datasette.toml.

The database is opened read-only but mutable (never immutable): Datasette reads the WAL
and sees new articles while a crawl writes. It is always served under the name
"armswatch" whatever the file is called, so saved links and feed URLs stay valid.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from pathlib import Path

from datasette.app import Database, Datasette
from datasette.plugins import pm

from storage import datasette_plugins
from storage.datasette_plugins import chart
from storage.metadata import DATABASE_NAME, datasette_metadata, datasette_settings
from storage.store import ArticleStore


def register_plugins() -> None:
    """Register armswatch's plugins with Datasette's (process-wide) plugin manager, once."""
    for plugin in (datasette_plugins, chart):
        if not pm.is_registered(plugin):
            pm.register(plugin)


def build_datasette(db_path: str | Path) -> Datasette:
    """A Datasette instance serving `db_path` with armswatch's metadata and plugins.

    The database is migrated first (through the store, the one writer) so the views and
    full-text index the metadata refers to exist.
    """
    db_path = Path(db_path)
    if not db_path.exists():
        raise FileNotFoundError(f"{db_path}: no such database; run `armswatch crawl` first")
    ArticleStore(db_path).close()
    register_plugins()
    ds = Datasette(
        [],
        metadata=datasette_metadata(),
        settings=datasette_settings(),
    )
    ds.remove_database("_memory")
    ds.add_database(Database(ds, path=str(db_path), is_mutable=True), name=DATABASE_NAME)
    return ds


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(db_path: str | Path, host: str = "127.0.0.1", port: int = 8001, echo: Callable[[str], None] = print) -> None:
    """Serve the database until interrupted (Ctrl-C)."""
    import uvicorn

    ds = build_datasette(db_path)
    echo(f"armswatch: browsing {db_path} at http://{host}:{port}/{DATABASE_NAME} (Ctrl-C to stop)")
    uvicorn.run(ds.app(), host=host, port=port, log_level="warning")
