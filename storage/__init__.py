"""SQLite storage: the schema, every write, and the Datasette metadata."""

import sys

# sqlite-utils imports numpy, when it is installed, only to map numpy scalars to column types;
# armswatch stores none. numpy is installed for the extraction workers, and in the crawl process
# it would hold 10 MB for nothing, so sqlite-utils is first imported with numpy hidden. An
# `import numpy` afterwards, where one is needed, still works.
if "sqlite_utils" not in sys.modules and "numpy" not in sys.modules:
    # None in sys.modules makes `import numpy` raise ImportError, which sqlite-utils expects
    sys.modules["numpy"] = None  # type: ignore[assignment]
    try:
        import sqlite_utils  # noqa: F401
    finally:
        del sys.modules["numpy"]

from storage.store import ArticleStore, SavedArticle, StoreError  # noqa: E402

__all__ = ["ArticleStore", "SavedArticle", "StoreError"]
