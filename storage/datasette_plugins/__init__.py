"""armswatch's own Datasette plugins, registered by crawler.browse (no entry point needed).

This package is itself a plugin. It adds a stylesheet (served from static/, never a CDN)
and a few lines of inline script that fold the long column descriptions, so table pages
open on their data; it shows tag lists as "Iran, North Korea" instead of JSON; its
templates/ give saved queries readable tab titles and the chart page its image.
The chart renderer lives in chart.py.
"""

from __future__ import annotations

import json

from datasette import hookimpl

PLUGIN = __name__  # Datasette serves static/ under /-/static-plugins/<module name>/


@hookimpl
def extra_css_urls(datasette):
    return [datasette.urls.static_plugins(PLUGIN, "armswatch.css")]


# Fold the column descriptions under a toggle; without JavaScript they simply stay visible.
FOLD_COLUMN_DESCRIPTIONS = """
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("dl.column-descriptions").forEach(function (list) {
    var details = document.createElement("details");
    var summary = document.createElement("summary");
    details.className = "armswatch-columns";
    summary.textContent = "Column descriptions";
    list.parentNode.insertBefore(details, list);
    details.appendChild(summary);
    details.appendChild(list);
  });
});
"""


@hookimpl
def extra_body_script(view_name):
    return FOLD_COLUMN_DESCRIPTIONS if view_name == "table" else None


TAG_COLUMNS = {"suppliers", "recipients", "weapons", "terms"}
TAG_TABLES = {"matches", "match_view"}


@hookimpl
def render_cell(value, column, table):
    """Tags and terms read as text in HTML pages (the JSON API keeps the JSON); None lets Datasette render.

    The result is a plain str, so Datasette's templates escape it like any crawled value.
    """
    if table not in TAG_TABLES or column not in TAG_COLUMNS or not isinstance(value, str):
        return None
    try:
        items = json.loads(value)
    except ValueError:
        return None
    if not isinstance(items, list):
        return None
    if column == "terms":
        return ", ".join(
            f"{item.get('term')} ({item.get('concept')})" if isinstance(item, dict) else str(item) for item in items
        )
    return ", ".join(str(item) for item in items)
