"""trafilatura without the copy of the cleaned page that its fast mode never reads.

Before it extracts, trafilatura's `_prepare_tree` cleans a copy of the page and keeps a second
copy of the cleaned page as a backup. Two steps read that backup: the comparison with
readability and jusText, which fast mode skips, and the comment handling of forum pages, which
needs comments on (armswatch extracts none). armswatch's first extraction of every page is a
fast one, so the copy cost about 0.2 ms a page, 2% of a worker's page, for nothing.

The lean step replaces trafilatura's only while the functions that make and read the backup
are the code it was written against (a hash of their source): a release that changes any of
them keeps its own step. tests/test_trafilatura_backup.py compares extractions with and without.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
from copy import copy

import trafilatura.core as core
from lxml.html import HtmlElement
from trafilatura.settings import Extractor

LOGGER = logging.getLogger(__name__)

# the functions that make the backup, read it, or call the one that makes it
BACKUP_CODE = ("_prepare_tree", "_extract_and_compare", "trafilatura_sequence", "_recall_retry")
WRITTEN_AGAINST = "0cc131dccfb01273"  # trafilatura 2.3.1
_SHIPPED = core._prepare_tree


def backup_code_hash() -> str | None:
    """A hash of the source of trafilatura's BACKUP_CODE; None when it cannot be read."""
    try:
        source = "".join(inspect.getsource(getattr(core, name)) for name in BACKUP_CODE)
    except (AttributeError, OSError, TypeError):
        return None
    return hashlib.sha256(source.encode()).hexdigest()[:16]


def lean_prepare_tree(tree: HtmlElement, options: Extractor, url: str | None) -> tuple[HtmlElement, HtmlElement | None]:
    """trafilatura's `_prepare_tree`, without the backup where nothing will read it (None)."""
    if options.fast and not options.comments:
        return core.convert_tags(core.tree_cleaning(copy(tree), options), options, url), None
    return _SHIPPED(tree, options, url)


def install() -> bool:
    """Use the lean step in trafilatura if its backup code is the one known; idempotent."""
    if core._prepare_tree is lean_prepare_tree:
        return True
    if core._prepare_tree is not _SHIPPED or backup_code_hash() != WRITTEN_AGAINST:
        LOGGER.debug("trafilatura's tree backup code changed: its own _prepare_tree stays")
        return False
    core._prepare_tree = lean_prepare_tree
    return True


def uninstall() -> None:
    """trafilatura's own step back (to compare with, in tests)."""
    core._prepare_tree = _SHIPPED
