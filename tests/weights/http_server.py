"""A local HTTP server for download tests, listening on 127.0.0.1 only.

Each route serves one body and can misbehave on purpose: ignore Range requests, drop the
connection after N bytes, send a wrong body, answer with an error status, or stand in
for Google Drive (confirm form, download_warning cookie, quota page). It counts the
body bytes it sends per route so tests can check that a resume fetched only the rest.
"""

from __future__ import annotations

import gzip
import hashlib
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

CONFIRM_PAGE = """<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title></head>
<body><div class="uc-main"><p class="uc-warning-caption">Google Drive can't scan this file for viruses.</p>
<form id="download-form" action="{action}" method="get">
<input type="submit" id="uc-download-link" class="goog-inline-block jfk-button" value="Download anyway"/>
<input type="hidden" name="id" value="{file_id}"><input type="hidden" name="export" value="download">
<input type="hidden" name="confirm" value="t"><input type="hidden" name="uuid" value="{uuid}">
</form></div></body></html>"""

COOKIE_PAGE = """<html><body><p>This file is too large to scan.</p>
<a id="uc-download-link" href="/uc?export=download&amp;confirm={token}&amp;id={file_id}">Download anyway</a>
</body></html>"""

QUOTA_PAGE = """<html><head><title>Google Drive - Quota exceeded</title></head><body>
<p>Too many users have viewed or downloaded this file recently. Please try accessing the file again later.
If the file you are trying to access is particularly large or is shared with many people, it may take up to
24 hours to be able to view or download the file.</p></body></html>"""


@dataclass
class Route:
    body: bytes
    range_support: bool = True
    cut_after: int | None = None  # drop the connection after this many body bytes...
    cuts: int = 0  # ...on this many requests
    wrong_body: bytes | None = None  # served instead of `body`
    status: int | None = None  # answer every request with this status (and an HTML page)
    gdrive: str | None = None  # None, "form", "cookie" or "quota"
    chunk: int = 64 * 1024
    delay: float = 0.0  # seconds between chunks, to keep a transfer in flight
    headers: dict[str, str] = field(default_factory=dict)  # sent with a `status` answer (e.g. Location)
    endless: bool = False  # no Content-Length; the body repeats until the client hangs up
    gzip: bool = False  # Content-Encoding: gzip, whatever the client asked for
    sent: int = 0  # body bytes sent, all requests
    requests: list[dict[str, str]] = field(default_factory=list)
    tokens: set[str] = field(default_factory=set)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.body).hexdigest()


class FileServer:
    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self._lock = threading.Lock()
        handler = _make_handler(self)
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02},
                                       daemon=True)

    def __enter__(self) -> FileServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    @property
    def base(self) -> str:
        port = self.httpd.server_address[1]
        return f"http://127.0.0.1:{port}"  # the server binds loopback only

    def add(self, path: str, body: bytes, **options: object) -> Route:
        route = Route(body, **options)  # type: ignore[arg-type]
        self.routes[path] = route
        return route

    def url(self, path: str) -> str:
        return self.base + path

    def label(self, path: str) -> str:
        """How a download names this source: host, port and path, without the scheme."""
        return f"127.0.0.1:{self.httpd.server_address[1]}{path}"


def _make_handler(server: FileServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # keep test output clean
            pass

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            parts = urlsplit(self.path)
            route = server.routes.get(parts.path)
            if route is None:
                return self._page(404, "<html><body>not found</body></html>")
            with server._lock:
                route.requests.append({k.lower(): v for k, v in self.headers.items()})
            query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            if route.status is not None:
                return self._page(route.status, QUOTA_PAGE if route.gdrive == "quota" else
                                  "<html><body>no</body></html>", headers=route.headers)
            if route.gdrive == "quota":
                return self._page(200, QUOTA_PAGE)
            if route.gdrive == "form" and not (query.get("confirm") == "t" and query.get("uuid") in route.tokens):
                token = secrets.token_hex(8)
                route.tokens.add(token)
                action = f"{server.base}{parts.path}"
                return self._page(200, CONFIRM_PAGE.format(action=action, file_id=query.get("id", "x"),
                                                           uuid=token))
            if route.gdrive == "cookie" and query.get("confirm") not in route.tokens:
                token = secrets.token_hex(4)
                route.tokens.add(token)
                return self._page(200, COOKIE_PAGE.format(token=token, file_id=query.get("id", "x")),
                                  cookie=f"download_warning_13058876669334088843_{query.get('id', 'x')}={token}")
            self._send_body(route)

        def _page(self, status: int, html: str, cookie: str | None = None,
                  headers: dict[str, str] | None = None) -> None:
            data = html.encode()
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            if cookie:
                self.send_header("Set-Cookie", f"{cookie}; Path=/")
            self.end_headers()
            self.wfile.write(data)

        def _send_body(self, route: Route) -> None:
            body = route.wrong_body if route.wrong_body is not None else route.body
            if route.endless:
                return self._send_endless(route, body)
            if route.gzip:
                body = gzip.compress(body)
            start = 0
            rng = self.headers.get("Range")
            if rng and route.range_support:
                start = int(rng.removeprefix("bytes=").split("-")[0])
                if start >= len(body):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(body)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            else:
                self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            if route.gzip:
                self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(body) - start))
            self.send_header("Accept-Ranges", "bytes" if route.range_support else "none")
            self.end_headers()
            limit = len(body)
            cut = False
            with server._lock:
                if route.cuts > 0 and route.cut_after is not None:
                    route.cuts -= 1
                    limit = min(len(body), start + route.cut_after)
                    cut = True
            pos = start
            try:
                while pos < limit:
                    piece = body[pos:min(limit, pos + route.chunk)]
                    self.wfile.write(piece)
                    self.wfile.flush()
                    pos += len(piece)
                    with server._lock:
                        route.sent += len(piece)
                    if route.delay:
                        time.sleep(route.delay)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True
                return
            if cut:
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

        def _send_endless(self, route: Route, body: bytes) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            try:
                while True:
                    self.wfile.write(body)
                    with server._lock:
                        route.sent += len(body)
            except (BrokenPipeError, ConnectionResetError, OSError):
                return

    return Handler


def download_worker(url: str, target: str, sha256: str, out: str) -> None:
    """Run in a separate process: download, then report what happened in a small file."""
    from styleclip_desktop.weights.download import download_file

    res = download_file(url, Path(target), sha256=sha256, retries=0, retry_wait=0)
    Path(out).write_text(f"{res.reused} {res.transferred} {res.sha256}")
