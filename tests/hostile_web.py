"""A local web that misbehaves on purpose, served from 127.0.0.1 for the fault suite.

Beside good feeds and pages it serves every failure a monitoring crawler meets in the
wild: server errors, hangs, resets, truncation, malformed and hostile XML, lying
charsets, compression bombs, huge pages, redirect tricks and hostile titles.
"""

from __future__ import annotations

import gzip
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

GOOD_ARTICLES = {
    "iran-drones": (
        "en",
        "Iran ships more attack drones to Russia",
        "Iran has shipped another batch of Shahed-136 attack drones to Russia, according to Ukrainian military "
        "intelligence, which said the delivery arrived by sea across the Caspian in early March. Russia is also "
        "seeking to buy Iranian ballistic missiles, the agency said.",
    ),
    "korea-shells": (
        "en",
        "North Korea delivered artillery shells to Russia by rail",
        "North Korea has delivered hundreds of thousands of 152 mm artillery shells to Russia by rail, South "
        "Korean intelligence told lawmakers, adding that Pyongyang received food and military technology in return.",
    ),
    "harvest": (
        "en",
        "Grain harvest sets a record in the south",
        "Farmers in the southern regions brought in a record grain harvest this year, helped by a mild spring. "
        "Exporters expect shipments through the ports to grow by a tenth.",
    ),
    "hostile-title": (
        "en",
        "<script>alert('pwned')</script> Belarus buys Russian air defence systems",
        "Belarus has agreed to buy additional S-400 air defence systems from Russia, the defence ministry in Minsk "
        "said, with deliveries of the missiles expected next year.",
    ),
}
CP1251_TEXT = (
    "Росія отримала від Ірану нову партію ударних дронів Shahed, повідомила українська розвідка. "
    "За її даними, Москва також намагається купити в Тегерана балістичні ракети."
)
PASSWD_MARKER = "root:x:0:0"


def article_html(title: str, body: str, lang: str = "en", charset: str = "utf-8") -> str:
    paragraphs = "".join(f"<p>{p}</p>" for p in [body, body.replace(",", ";")])
    # the title is inserted raw on purpose: hostile text must be escaped downstream
    return (
        f'<!DOCTYPE html><html lang="{lang}"><head><meta charset="{charset}"><title>{title}</title></head>'
        f"<body><nav><a href='/'>Home</a></nav><article><h1>{title}</h1>{paragraphs}"
        f"<p>Officials did not comment further on the report when asked on Tuesday.</p></article>"
        f"<footer>© 2026 Hostile Gazette</footer></body></html>"
    )


def rss(base: str, items: list[tuple[str, str]]) -> bytes:
    entries = "".join(
        f"<item><title>{title}</title><link>{link if ':' in link else base + link}</link>"
        f"<pubDate>Mon, 02 Mar 2026 08:00:00 GMT</pubDate><description>{title}</description></item>"
        for title, link in items
    )
    return (
        f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>Hostile Gazette</title>'
        f"<link>{base}/</link><description>d</description>{entries}</channel></rss>"
    ).encode("utf-8")


BILLION_LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + "".join(f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">' for i in range(1, 10))
    + "]>"
)


class HostileHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "HostileServer"

    def log_message(self, *args: object) -> None:
        pass

    # -- helpers -------------------------------------------------------------------------

    def send(self, status: int, body: bytes, content_type: str = "text/html; charset=utf-8", headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def reset_connection(self) -> None:
        """Close with RST instead of FIN: the client sees a connection reset."""
        self.wfile.flush()
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()
        self.close_connection = True

    # -- routes --------------------------------------------------------------------------

    def do_GET(self) -> None:  # noqa: C901 - a route table reads best as one function
        self.server.log.append(self.path)
        base = self.server.base_url
        path = self.path.split("?")[0]
        if path == "/robots.txt":
            return self.send(200, b"User-agent: *\nDisallow: /private/\n", "text/plain")
        if path == "/good.xml":
            items = [(title, f"/articles/{slug}.html") for slug, (_, title, _) in GOOD_ARTICLES.items()]
            items += [
                ("Ukrainian story in windows-1251", "/articles/cp1251.html"),
                ("A secret section", "/private/secret.html"),
                ("A javascript link", "javascript:alert(document.cookie)"),
                ("A data link", "data:text/html,hello"),
                ("Reset mid-body", "/articles/reset.html"),
                ("Truncated chunked", "/articles/truncated.html"),
                ("Gzip bomb", "/articles/bomb.html"),
                ("Huge page", "/articles/huge.html"),
                ("Redirect loop", "/articles/loop.html"),
                ("Redirect to a local file", "/articles/to-file.html"),
                ("Redirect to a non-public address", "/articles/to-private.html"),
                ("Empty page", "/articles/empty.html"),
                ("Server error page", "/articles/error.html"),
                ("Hanging page", "/articles/hang.html"),
            ]
            return self.send(200, rss(base, items).replace(b"<title><script>", b"<title>&lt;script&gt;"), "application/rss+xml")
        if path.startswith("/articles/") and path[10:-5] in GOOD_ARTICLES:
            lang, title, body = GOOD_ARTICLES[path[10:-5]]
            return self.send(200, article_html(title, body, lang).encode("utf-8"))
        if path == "/articles/cp1251.html":
            page = article_html("Росія отримала нову партію дронів з Ірану", CP1251_TEXT, "uk", "utf-8")
            return self.send(200, page.encode("windows-1251"), "text/html; charset=utf-8")
        if path == "/private/secret.html":
            return self.send(200, article_html("Secret", "This page is disallowed by robots.txt.").encode())
        if path == "/articles/reset.html":
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", "100000")
            self.end_headers()
            self.wfile.write(b"<html><body><p>" + b"partial " * 500)
            return self.reset_connection()
        if path == "/articles/truncated.html":
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            chunk = b"<html><body><p>" + b"chunk " * 200
            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.write(b"ffff\r\nonly a little")
            self.wfile.flush()
            self.close_connection = True
            return self.connection.shutdown(socket.SHUT_RDWR)
        if path == "/articles/bomb.html":
            return self.send(200, self.server.bomb, headers={"Content-Encoding": "gzip"})
        if path == "/articles/huge.html":
            size = 50_000_000
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            block = b"<p>" + b"x" * 1020 + b"</p>"
            try:
                for _ in range(size // len(block)):
                    self.wfile.write(block)
                    self.server.huge_bytes_sent += len(block)
            except OSError:
                pass
            self.close_connection = True
            return None
        if path == "/articles/loop.html":
            return self.send(302, b"", headers={"Location": f"{base}/articles/loop.html"})
        if path == "/articles/to-file.html":
            return self.send(302, b"", headers={"Location": "file:///etc/passwd"})
        if path == "/articles/to-private.html":
            return self.send(302, b"", headers={"Location": f"http://127.0.0.2:{self.server.server_address[1]}/articles/iran-drones.html"})
        if path == "/articles/empty.html":
            return self.send(200, b"")
        if path == "/articles/error.html":
            return self.send(500, b"Internal Server Error")
        if path in ("/hang.xml", "/articles/hang.html"):
            self.server.stop_hanging.wait(60)
            self.close_connection = True
            return None
        if path == "/503.xml":
            return self.send(503, b"busy", headers={"Retry-After": "1"})
        if path == "/500.xml":
            return self.send(500, b"boom")
        if path == "/410.xml":
            return self.send(410, b"gone")
        if path == "/malformed.xml":
            return self.send(200, b'<?xml version="1.0"?><rss><channel><title>broken</titl><item><link>', "application/rss+xml")
        if path == "/garbage.xml":  # not HTTP at all
            self.wfile.write(b"NONSENSE 12 what\r\n\r\n")
            self.close_connection = True
            return None
        if path == "/xz.xml":  # an encoding no client of ours reads
            return self.send(200, b"\xfd7zXZ\x00\x00 not really xz", "application/rss+xml", {"Content-Encoding": "xz"})
        if path == "/bad-gzip.xml":
            return self.send(200, b"this is not gzip data at all", "application/rss+xml", {"Content-Encoding": "gzip"})
        if path == "/credentials.xml":
            return self.send(302, b"", headers={"Location": f"http://reader:s3cretPW@{base.split('://', 1)[1]}/good.xml"})
        if path == "/html-as-feed.xml":
            return self.send(200, b"<html><body><h1>Not a feed</h1><p>Just a page.</p></body></html>", "application/rss+xml")
        if path == "/wrong-charset.xml":
            body = rss(base, [("Шахеди для Росії", "/articles/iran-drones.html?utm_source=wrong-charset")])
            body = body.decode("utf-8").replace('encoding="utf-8"', 'encoding="utf-8"').encode("windows-1251")
            return self.send(200, body, "application/rss+xml; charset=utf-8")
        if path == "/xxe.xml":
            body = (
                '<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
                f'<rss version="2.0"><channel><title>x</title><item><title>XXE &xxe;</title>'
                f"<link>{base}/articles/korea-shells.html?utm_source=xxe</link><description>&xxe;</description></item></channel></rss>"
            )
            return self.send(200, body.encode(), "application/rss+xml")
        if path == "/laughs.xml":
            body = BILLION_LAUGHS + '<rss version="2.0"><channel><title>&lol9;</title><item><title>&lol9;</title><link>http://127.0.0.1/x</link></item></channel></rss>'
            return self.send(200, body.encode(), "application/rss+xml")
        if path == "/laughs-sitemap.xml":
            body = BILLION_LAUGHS + '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"><url><loc>&lol9;</loc></url></urlset>'
            return self.send(200, body.encode(), "application/xml")
        if path == "/xxe-sitemap.xml":
            body = (
                '<?xml version="1.0"?><!DOCTYPE urlset [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
                '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"><url><loc>http://127.0.0.1/&xxe;</loc></url></urlset>'
            )
            return self.send(200, body.encode(), "application/xml")
        return self.send(404, b"not found")


class HostileServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), HostileHandler)
        self.base_url = f"http://127.0.0.1:{self.server_address[1]}"
        self.log: list[str] = []
        self.huge_bytes_sent = 0
        self.stop_hanging = threading.Event()
        self.bomb = gzip.compress(b" " * 60_000_000, compresslevel=9)  # ~60 KB on the wire, 60 MB inflated
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)

    def __enter__(self) -> "HostileServer":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_hanging.set()
        self.shutdown()
        self.server_close()


def wait_for(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False
