"""SQLite storage: the schema, every write, and the Datasette metadata."""

from storage.store import ArticleStore, SavedArticle, StoreError

__all__ = ["ArticleStore", "SavedArticle", "StoreError"]
