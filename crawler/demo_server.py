"""A small static HTTP server on 127.0.0.1 for the bundled demo site and the tests.

Files are served from a folder; in text files the placeholder `{{BASE}}` becomes the
server's own address, so feeds can carry absolute links whatever port was free.
"""

from __future__ import annotations

import gzip
import mimetypes
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any

PLACEHOLDER = b"{{BASE}}"
TEXT_SUFFIXES = {".xml", ".html", ".htm", ".json", ".txt", ".opml", ".rss", ".atom"}
CONTENT_TYPES = {".xml": "application/xml", ".json": "application/feed+json", ".opml": "text/x-opml", ".gz": "application/gzip"}


def demo_site_path() -> Path:
    return Path(str(resources.files("crawler").joinpath("demo_site")))


class SiteHandler(SimpleHTTPRequestHandler):
    """Serves files with {{BASE}} substituted; quiet logs."""

    base_url = ""

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def parse_request(self) -> bool:
        ok = super().parse_request()
        if ok:
            self.server.request_log.append(self.path)  # type: ignore[attr-defined]
        return ok

    def send_head(self):  # type: ignore[override]
        path = Path(self.translate_path(self.path))
        if path.is_dir():
            path = path / "index.html"
        if not path.is_file():
            self.send_error(404, "Not found")
            return None
        data = path.read_bytes()
        base = self.server.base_url.encode()  # type: ignore[attr-defined]
        if path.suffix in TEXT_SUFFIXES:
            data = data.replace(PLACEHOLDER, base)
        elif path.suffix == ".gz":
            data = gzip.compress(gzip.decompress(data).replace(PLACEHOLDER, base), mtime=0)
        content_type = CONTENT_TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        if path.suffix in (".html", ".htm") and "charset" not in content_type:
            content_type = "text/html"
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        from io import BytesIO

        return BytesIO(data)


class SiteServer:
    """Serve `root` on 127.0.0.1:<free port> in a background thread (a context manager)."""

    def __init__(self, root: str | Path, handler: type[SimpleHTTPRequestHandler] = SiteHandler, port: int = 0):
        self.root = Path(root)
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), partial(handler, directory=str(self.root)))
        self.httpd.daemon_threads = True
        self.httpd.request_log = []  # type: ignore[attr-defined]  # paths requested, for tests
        self.httpd.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}"  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="site-server", daemon=True)

    @property
    def base_url(self) -> str:
        return self.httpd.base_url  # type: ignore[attr-defined]

    @property
    def request_log(self) -> list[str]:
        return self.httpd.request_log  # type: ignore[attr-defined]

    def __enter__(self) -> SiteServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
