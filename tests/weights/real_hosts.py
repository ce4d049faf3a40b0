"""The hosts the model catalog names, answering the way each does today, on 127.0.0.1.

Every request arrives through $STYLECLIP_DOWNLOAD_MIRROR as `/HOST/PATH?QUERY` (for the
Hugging Face hub, through $HF_ENDPOINT = `<mirror>/huggingface.co`):

- NVIDIA's CDN (nvlabs-fi-cdn.nvidia.com): a plain file, with Range;
- Google Drive: `drive.google.com/uc?export=download&id=ID` redirects (302) to
  `drive.usercontent.google.com/download?id=ID&export=download`, which answers with the
  "can't scan this file for viruses" page, a form with hidden id/export/confirm/uuid fields;
  submitting it gives the file. A file over its daily quota gets the quota page instead;
- the Hugging Face hub: `huggingface.co/REPO/resolve/REV/FILE` answers HEAD and GET with a
  302 to its CDN, carrying X-Repo-Commit, X-Linked-Etag (the file's sha256), X-Linked-Size
  and an ETag; the CDN is a second server on another port, because huggingface_hub reads
  the metadata off a redirect to another host instead of following it; a missing file is a
  404 with X-Error-Code: EntryNotFound;
- GitHub: `github.com/OWNER/REPO/raw/REF/PATH` redirects to raw.githubusercontent.com for a
  plain file and to media.githubusercontent.com/media/... for a Git LFS file;
  raw.githubusercontent.com serves an LFS file's pointer text, not the file.

Each copy of a file (one per source) can be broken on purpose: "quota" (Drive's quota
page), "pointer" (a Git LFS pointer instead of the file), "truncated" (the first half,
served as if it were all), "wrong" (another file's bytes), "missing" (404).
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from styleclip_desktop.weights.catalog import Catalog
from styleclip_desktop.weights.identify import LFS_POINTER_VERSION

from .http_server import CONFIRM_PAGE, QUOTA_PAGE

MODES = ("ok", "quota", "pointer", "truncated", "wrong", "missing")
HF_COMMIT = "6b0ef6fb94c5d40f4a5a4e1b3a62ddf6b72ab1f0"


@dataclass
class Copy:
    """One source's copy of a file."""

    body: bytes
    lfs: bool = False  # GitHub keeps it in Git LFS
    mode: str = "ok"
    requests: int = 0  # requests that reached this copy (pages and redirects included)
    served: int = 0  # complete bodies sent

    def payload(self) -> bytes:
        if self.mode == "truncated":
            return self.body[: len(self.body) // 2]
        if self.mode == "wrong":
            return hashlib.sha256(self.body).digest() * (len(self.body) // 32 + 1)
        if self.mode == "pointer":
            return lfs_pointer(self.body)
        return self.body


def lfs_pointer(body: bytes) -> bytes:
    return LFS_POINTER_VERSION + (f"oid sha256:{hashlib.sha256(body).hexdigest()}\n"
                                  f"size {len(body)}\n").encode()


def copy_key(url: str) -> str:
    """Which copy a catalog URL reaches (see `host_copy_key`)."""
    parts = urlsplit(url)
    return host_copy_key(parts.netloc, parts.path, parts.query)


def host_copy_key(host: str, path: str, query_string: str = "") -> str:
    """Which copy a request for HOST/PATH?QUERY reaches: Drive's two endpoints reach one
    copy per file id, and the hub one copy per file whatever the revision."""
    query = {k: v[-1] for k, v in parse_qs(query_string).items()}
    if host in ("drive.google.com", "drive.usercontent.google.com"):
        return f"gdrive:{query.get('id', '')}"
    if host == "huggingface.co":  # REPO/resolve/REV/FILE
        org, repo, _resolve, _rev, *rest = path.strip("/").split("/")
        return f"huggingface.co/{org}/{repo}/{'/'.join(rest)}"
    if host == "github.com":  # OWNER/REPO/raw/REF/PATH
        owner, repo, _raw, _ref, *rest = path.strip("/").split("/")
        return f"github.com/{owner}/{repo}/{'/'.join(rest)}"
    if host == "raw.githubusercontent.com":
        owner, repo, _ref, *rest = path.strip("/").split("/")
        return f"raw.githubusercontent.com/{owner}/{repo}/{'/'.join(rest)}"
    if host == "media.githubusercontent.com":
        _media, owner, repo, _ref, *rest = path.strip("/").split("/")
        return f"media.githubusercontent.com/{owner}/{repo}/{'/'.join(rest)}"
    return f"{host}{path}"


@dataclass
class RealHosts:
    copies: dict[str, Copy] = field(default_factory=dict)
    _tokens: set[str] = field(default_factory=set)
    _cdn: dict[str, Copy] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        self.main = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self, cdn=False))
        self.cdn = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self, cdn=True))
        for s in (self.main, self.cdn):
            s.daemon_threads = True

    def __enter__(self) -> RealHosts:
        for s in (self.main, self.cdn):
            threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        for s in (self.main, self.cdn):
            s.shutdown()
            s.server_close()

    @property
    def mirror(self) -> str:
        return f"http://127.0.0.1:{self.main.server_address[1]}"

    def at(self, host: str, path: str) -> str:
        """A host's own absolute URL, as the mirror serves it: what the host's redirects and
        forms point to (the downloader maps it back to the published URL)."""
        return f"{self.mirror}/{host}{path}"

    @property
    def hf_endpoint(self) -> str:
        return f"{self.mirror}/huggingface.co"

    def publish(self, catalog: Catalog, files: dict[str, bytes], lfs: tuple[str, ...] = (),
                hf_files: dict[str, bytes] | None = None) -> None:
        """Put `files` (catalog id -> bytes) at every source the catalog names for it;
        `hf_files` (file name -> bytes) in the Hugging Face repo of each hub entry."""
        for entry in catalog:
            if entry.via_huggingface and hf_files:
                for name, body in hf_files.items():
                    self.copies[f"huggingface.co/{entry.hf_repo}/{name}"] = Copy(body)
            if entry.id not in files:
                continue
            for src in entry.download_sources:
                self.copies[copy_key(src.url)] = Copy(files[entry.id], lfs=entry.id in lfs)
            for src in entry.download_sources:  # GitHub's other hosts serve the same repository
                key = copy_key(src.url)
                if key.startswith("github.com/"):
                    rest = key.removeprefix("github.com/")
                    for host in ("raw.githubusercontent.com", "media.githubusercontent.com"):
                        self.copies.setdefault(f"{host}/{rest}", Copy(files[entry.id], lfs=entry.id in lfs))

    def copy_for(self, url: str) -> Copy:
        return self.copies[copy_key(url)]


def _handler(hosts: RealHosts, cdn: bool) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_HEAD(self) -> None:  # noqa: N802 (http.server's naming)
            self._route(head=True)

        def do_GET(self) -> None:  # noqa: N802
            self._route(head=False)

        # --- hosts ---------------------------------------------------------------

        def _route(self, head: bool) -> None:
            parts = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            if cdn:
                found = hosts._cdn.get(parts.path)
                return self._file(found, head) if found else self._status(404)
            host, _, rest = parts.path.lstrip("/").partition("/")
            copy = hosts.copies.get(host_copy_key(host, "/" + rest, parts.query))
            if copy is not None:
                with hosts.lock:
                    copy.requests += 1
            if host == "drive.google.com" and rest == "uc":
                return self._redirect(hosts.at("drive.usercontent.google.com", "/download?"
                                               f"id={query.get('id', '')}&export=download"))
            if copy is None or copy.mode == "missing":
                extra = {"X-Error-Code": "EntryNotFound"} if host == "huggingface.co" else {}
                return self._status(404, extra)
            if host == "drive.usercontent.google.com":
                return self._drive(copy, query, head)
            if host == "huggingface.co":
                return self._hub(copy, head)
            if host == "github.com":
                if copy.mode == "pointer":  # GitHub answering with the pointer text
                    return self._file(copy, head, "text/plain; charset=utf-8")
                owner, repo, _raw, ref, *path = rest.split("/")
                if copy.lfs:
                    return self._redirect(hosts.at("media.githubusercontent.com",
                                                   f"/media/{owner}/{repo}/{ref}/" + "/".join(path)))
                return self._redirect(hosts.at("raw.githubusercontent.com",
                                               f"/{owner}/{repo}/{ref}/" + "/".join(path)))
            if host == "raw.githubusercontent.com" and copy.lfs:
                return self._bytes(lfs_pointer(copy.body), head, "text/plain; charset=utf-8")
            return self._file(copy, head)

        def _drive(self, copy: Copy, query: dict[str, str], head: bool) -> None:
            if copy.mode == "quota":
                return self._page(200, QUOTA_PAGE)
            if query.get("confirm") == "t" and query.get("uuid") in hosts._tokens:
                return self._file(copy, head, disposition=True)
            token = secrets.token_hex(8)
            with hosts.lock:
                hosts._tokens.add(token)
            return self._page(200, CONFIRM_PAGE.format(action=hosts.at("drive.usercontent.google.com", "/download"),
                                                       file_id=query.get("id", ""), uuid=token))

        def _hub(self, copy: Copy, head: bool) -> None:
            sha = hashlib.sha256(copy.body).hexdigest()
            location = f"/cdn-lfs.hf.co/repos/{sha[:2]}/{sha[2:4]}/{sha}"
            with hosts.lock:
                hosts._cdn[location] = copy
            self.send_response(302)
            self.send_header("Location", f"http://127.0.0.1:{hosts.cdn.server_address[1]}{location}")
            self.send_header("X-Repo-Commit", HF_COMMIT)
            self.send_header("X-Linked-Etag", f'"{sha}"')
            self.send_header("X-Linked-Size", str(len(copy.body)))
            self.send_header("ETag", f'"{hashlib.sha1(copy.body).hexdigest()}"')
            self.send_header("Content-Length", "0")
            self.end_headers()

        # --- answers -------------------------------------------------------------

        def _redirect(self, location: str) -> None:
            self.send_response(302)
            self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _status(self, status: int, headers: dict[str, str] | None = None) -> None:
            self._page(status, "<html><body>Not Found</body></html>", headers)

        def _page(self, status: int, html: str, headers: dict[str, str] | None = None) -> None:
            data = html.encode()
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":  # a HEAD answer has headers only
                self.wfile.write(data)

        def _file(self, copy: Copy, head: bool, content_type: str = "application/octet-stream",
                  disposition: bool = False) -> None:
            with hosts.lock:
                copy.served += 0 if head else 1
            self._bytes(copy.payload(), head, content_type, disposition)

        def _bytes(self, body: bytes, head: bool, content_type: str, disposition: bool = False) -> None:
            start = 0
            rng = self.headers.get("Range")
            if rng and rng.startswith("bytes="):
                start = int(rng.removeprefix("bytes=").split("-")[0] or 0)
            if start >= len(body) and start:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if start:
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            else:
                self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("ETag", f'"{hashlib.md5(body).hexdigest()}"')
            if disposition:
                self.send_header("Content-Disposition", 'attachment; filename="model.pt"')
            self.send_header("Content-Length", str(len(body) - start))
            self.end_headers()
            if not head:
                self.wfile.write(body[start:])

    return Handler
