"""Downloading one large file safely: resumable, verified, cancellable, one writer at a time.

The bytes go to `<target>.part` and are hashed as they arrive. After a dropped
connection the next attempt asks for the rest with an HTTP Range request (hashing what
is already on disk first); a server that ignores Range makes us start over cleanly.
Only a complete file whose SHA-256 (when one is known) and content check pass is renamed
into place, atomically; anything else goes to `quarantine/` with a message saying why.
A lock file keeps two processes from writing the same model: the second one waits and
then finds the finished file.

A model may be published in several places. Every source is tried in order, whatever went
wrong with the one before (an HTTP error, a Drive quota page, a Git LFS pointer, a
truncated or wrong file), and the download fails only when all have, with one line per
source saying what it answered. A `.part` file belongs to the source it came from: it is
resumed from that source first and never appended to by another.

$STYLECLIP_DOWNLOAD_MIRROR=http://host:port[/prefix] sends every request for
https://HOST/PATH (and, for CLIP, the Hugging Face hub unless $HF_ENDPOINT says otherwise) to http://host:port[/prefix]/HOST/PATH instead, redirects and Drive's
confirm forms included: a company mirror that keeps the hosts' paths, or the rehearsal of
the real hosts that the tests run on 127.0.0.1.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import re
import shutil
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urljoin, urlsplit

from filelock import FileLock, Timeout

from styleclip_desktop import __version__
from styleclip_desktop.errors import Cancelled, ModelFileError, UserError
from styleclip_desktop.weights import gdrive
from styleclip_desktop.weights.catalog import Source, source_label

if TYPE_CHECKING:
    # The HTTP libraries are imported where a download starts: commands that only look up
    # or hash files already here do not wait for them.
    import requests

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int | None], None]
CancelToken = threading.Event | Callable[[], bool] | None
Validator = Callable[[Path], None]

CHUNK = 1 << 20
_MAX_HTML = 2 << 20
_USER_AGENT = f"styleclip-desktop/{__version__}"
_MAX_HOPS = 12  # redirects and Drive confirm pages together
MIRROR_ENV = "STYLECLIP_DOWNLOAD_MIRROR"


class DownloadError(UserError):
    """The file could not be fetched from any of its sources."""

    def __init__(self, message: str, failures: Sequence[tuple[Source, str]] = ()) -> None:
        super().__init__(message)
        self.failures = tuple(failures)  # (source, what it answered), in the order tried


class DiskFull(UserError):
    """No other source can help: the disk is full."""


class ChecksumMismatch(ModelFileError):
    def __init__(self, name: str, expected: str, actual: str, moved_to: Path) -> None:
        super().__init__(f"{name} failed its checksum: expected sha256 {expected}, got {actual}; "
                         f"the file was moved to {moved_to}")
        self.expected, self.actual, self.moved_to = expected, actual, moved_to


class _Retry(Exception):
    """A transient failure: the next attempt resumes from what is on disk."""


@dataclass(frozen=True)
class DownloadResult:
    path: Path
    sha256: str
    size: int
    transferred: int  # bytes received over the network by this call
    resumed_from: int  # bytes that were already in the .part file
    reused: bool  # the file was already complete (perhaps finished by another process)
    source: str = ""  # the label of the source it came from ("" when reused)


def part_path(target: Path) -> Path:
    return target.with_name(target.name + ".part")


def _part_source_path(target: Path) -> Path:
    return target.with_name(target.name + ".part.source")


def mirror_base() -> str:
    return os.environ.get(MIRROR_ENV, "").strip().rstrip("/")


def mirrored(url: str) -> str:
    """The URL actually requested for `url` (see $STYLECLIP_DOWNLOAD_MIRROR)."""
    base = mirror_base()
    parts = urlsplit(url)
    if not base or parts.scheme != "https" or not parts.netloc:
        return url  # published sources are https; anything else is already the mirror's own
    return f"{base}/{parts.netloc}{parts.path}" + (f"?{parts.query}" if parts.query else "")


def unmirrored(url: str) -> str:
    """The published URL behind a mirrored one (the mirror may answer with its own URLs)."""
    base = mirror_base()
    if base and url.startswith(base + "/"):
        return "https://" + url[len(base) + 1:]
    return url


def lock_path(target: Path) -> Path:
    return target.with_name(target.name + ".lock")


def is_cancelled(cancel: CancelToken) -> bool:
    if cancel is None:
        return False
    if isinstance(cancel, threading.Event):
        return cancel.is_set()
    return bool(cancel())


def sha256_of(path: Path, cancel: CancelToken = None, progress: ProgressFn | None = None) -> str:
    return _hash_into(hashlib.sha256(), path, cancel, progress).hexdigest()


def _hash_into(h: hashlib._Hash, path: Path, cancel: CancelToken = None,
               progress: ProgressFn | None = None) -> hashlib._Hash:
    total = path.stat().st_size
    done = 0
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            if is_cancelled(cancel):
                raise Cancelled(f"checking {path.name} was cancelled")
            h.update(block)
            done += len(block)
            if progress:
                progress(done, total)
    return h


QUARANTINE_PER_MODEL = 3  # the newest bad files of each model are kept for the user to inspect
QUARANTINE_MAX_BYTES = 4 << 30  # and the folder as a whole stays below this


def quarantine(path: Path, target: Path, tag: str) -> Path:
    """Move a bad file aside for the user to inspect. The folder is bounded: only the newest
    few of each model are kept, within a total size, so a hostile or broken host that is
    tried again and again cannot fill the disk through it."""
    qdir = target.parent / "quarantine"
    qdir.mkdir(parents=True, exist_ok=True)
    dest = qdir / f"{target.name}.{tag}"
    n = 1
    while dest.exists():
        dest = qdir / f"{target.name}.{tag}.{n}"
        n += 1
    os.replace(path, dest)
    _bound_quarantine(qdir, target.name, keep=dest)
    return dest


def _bound_quarantine(qdir: Path, model_name: str, keep: Path) -> None:
    def by_age(paths: list[Path]) -> list[Path]:
        return sorted(paths, key=lambda p: p.stat().st_mtime_ns, reverse=True)  # newest first

    try:
        files = by_age([p for p in qdir.iterdir() if p.is_file()])
        mine = [p for p in files if p.name.startswith(model_name + ".")]
        drop = set(mine[QUARANTINE_PER_MODEL:])
        total = 0
        for p in files:
            if p in drop:
                continue
            total += p.stat().st_size
            if total > QUARANTINE_MAX_BYTES and p != keep:
                drop.add(p)
        for p in drop - {keep}:
            log.info("removing old quarantined file %s", p)
            p.unlink(missing_ok=True)
    except OSError as exc:  # bounding is housekeeping; the download's own result stands
        log.warning("could not tidy %s: %s", qdir, exc)


@dataclass(frozen=True)
class Limits:
    """What a source may take, so that an endless or trickling body cannot run forever or
    fill the disk. Each is set by an environment variable (see `from_env`)."""

    max_bytes: int = 8 << 30  # no model file is near this: e4e, the largest, is 1.2 GB
    deadline_s: float = 12 * 3600.0  # one source, all its attempts together
    min_rate: float = 1024.0  # bytes/s, averaged over rate_window_s
    rate_window_s: float = 120.0

    @classmethod
    def from_env(cls) -> Limits:
        def get(name: str, default: float) -> float:
            raw = os.environ.get(name, "").strip()
            try:
                return float(raw) if raw else default
            except ValueError:
                raise UserError(f"{name} must be a number, got '{raw}'") from None

        d = cls()
        return cls(int(get("STYLECLIP_DOWNLOAD_MAX_BYTES", d.max_bytes)),
                   get("STYLECLIP_DOWNLOAD_DEADLINE", d.deadline_s),
                   get("STYLECLIP_DOWNLOAD_MIN_RATE", d.min_rate),
                   get("STYLECLIP_DOWNLOAD_RATE_WINDOW", d.rate_window_s))


def download_file(urls: str | Source | Sequence[str | Source], target: str | os.PathLike[str], *,
                  sha256: str | None = None, source_hashes: Mapping[str, str] | None = None,
                  size: int | None = None, progress: ProgressFn | None = None, cancel: CancelToken = None,
                  validate: Validator | None = None, session: requests.Session | None = None,
                  timeout: tuple[float, float] = (15.0, 60.0), retries: int = 3,
                  retry_wait: float = 2.0, what: str | None = None,
                  limits: Limits | None = None) -> DownloadResult:
    """Fetch `target` from the first of `urls` that gives the right file; see the module docstring.

    `sha256` is a published checksum every source must match; `source_hashes` maps a
    source's label to the checksum recorded from that source alone.
    """
    target = Path(target)
    sources = _as_sources(urls)
    if not sources:
        raise DownloadError(f"no download source is known for {what or target.name}; "
                            "import the file with `models import`")
    name = what or target.name
    lim = limits or Limits.from_env()
    target.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(lock_path(target)))
    while True:  # wait for another writer, but stay cancellable while waiting
        if is_cancelled(cancel):
            raise Cancelled(f"download of {name} cancelled")
        try:
            lock.acquire(timeout=0.2)
            break
        except Timeout:
            continue
    own = session is None
    sess = session or _new_session()
    try:
        done = _reuse_existing(target, sha256, size, validate, cancel, name)
        if done is not None:
            return done
        failures: list[tuple[Source, str]] = []
        last: UserError | None = None
        for src in _resume_first(sources, target):
            expect = sha256 or (source_hashes or {}).get(src.label)
            _claim_part(target, src)
            try:
                return _fetch(sess, src, target, expect, size, progress, cancel, validate, timeout,
                              retries, retry_wait, name, lim)
            except (Cancelled, DiskFull):
                raise
            except UserError as exc:  # this source failed; the next may not
                log.info("source %s failed for %s: %s", src.url, name, exc)
                failures.append((src, " ".join(str(exc).split())))
                last = exc
        if len(failures) == 1 and last is not None:
            raise last
        lines = "\n".join(f"  {_host(src.url)}: {why}" for src, why in failures)
        raise DownloadError(f"every source for {name} failed ({len(failures)} tried):\n{lines}", failures)
    finally:
        if own:
            sess.close()
        lock.release()


def _as_sources(urls: str | Source | Sequence[str | Source]) -> list[Source]:
    items: Sequence[str | Source] = [urls] if isinstance(urls, str | Source) else urls
    return [u if isinstance(u, Source) else Source(u, source_label(u)) for u in items]


def _resume_first(sources: list[Source], target: Path) -> list[Source]:
    """The source an interrupted download came from goes first, so its bytes are resumed."""
    try:
        label = _part_source_path(target).read_text(encoding="utf-8").strip()
    except OSError:
        return sources
    return sorted(sources, key=lambda s: s.label != label)  # stable: the rest keep their order


def _claim_part(target: Path, src: Source) -> None:
    """A `.part` left by another source is not this source's file: start this one afresh."""
    part, marker = part_path(target), _part_source_path(target)
    try:
        owner = marker.read_text(encoding="utf-8").strip()
    except OSError:
        owner = src.label if part.exists() else ""  # a .part from before sources were recorded
    if part.exists() and owner != src.label:
        log.info("discarding %s (%d bytes from %s) before downloading from %s",
                 part, part.stat().st_size, owner, src.label)
        part.unlink()
    try:
        marker.write_text(src.label + "\n", encoding="utf-8")
    except OSError:
        pass  # only costs the resume order next time


def _new_session() -> requests.Session:
    import requests

    s = requests.Session()
    s.headers["User-Agent"] = _USER_AGENT
    return s


def _reuse_existing(target: Path, sha256: str | None, size: int | None, validate: Validator | None,
                    cancel: CancelToken, name: str) -> DownloadResult | None:
    if not target.is_file():
        return None
    actual_size = target.stat().st_size
    digest = sha256_of(target, cancel)
    problem = None
    if sha256 and digest != sha256.lower():
        problem = f"expected sha256 {sha256}, got {digest}"
    elif size and actual_size != size:
        problem = f"expected {size} bytes, got {actual_size}"
    elif validate is not None:
        try:
            validate(target)
        except ModelFileError as exc:
            problem = str(exc)
    if problem is None:
        return DownloadResult(target, digest, actual_size, 0, 0, True)
    moved = quarantine(target, target, digest[:12])
    log.warning("existing %s is damaged (%s); moved to %s and downloading again", name, problem, moved)
    return None


def _fetch(sess: requests.Session, src: Source, target: Path, sha256: str | None, size: int | None,
           progress: ProgressFn | None, cancel: CancelToken, validate: Validator | None,
           timeout: tuple[float, float], retries: int, retry_wait: float, name: str,
           limits: Limits) -> DownloadResult:
    url = src.url
    part = part_path(target)
    deadline = time.monotonic() + limits.deadline_s
    received = [0]  # survives the attempts that end in _Retry
    resumed_from = part.stat().st_size if part.exists() else 0
    attempt = 0
    while True:
        try:
            h, written = _transfer(sess, url, part, size, progress, cancel, timeout, name, received,
                                   limits, deadline)
            break
        except _Retry as exc:
            attempt += 1
            if attempt > retries:
                have = part.stat().st_size if part.exists() else 0
                raise DownloadError(f"{exc}; {have} bytes are kept in {part} and the next "
                                    "download resumes from there") from None
            log.info("retrying %s (%s)", name, exc)
            if retry_wait:
                time.sleep(min(retry_wait * attempt, max(deadline - time.monotonic(), 0.0)))
    digest = h.hexdigest()
    problem = None
    if sha256 and digest != sha256.lower():
        moved = quarantine(part, target, digest[:12])
        raise ChecksumMismatch(name, sha256.lower(), digest, moved)
    if size and written != size:
        problem = f"expected {size} bytes, got {written}"
    elif validate is not None:
        try:
            validate(part)
        except ModelFileError as exc:
            problem = str(exc)
    if problem:
        moved = quarantine(part, target, digest[:12])
        raise ModelFileError(f"the download of {name} is not the expected file ({problem}); "
                             f"it was moved to {moved}")
    os.replace(part, target)
    _part_source_path(target).unlink(missing_ok=True)
    return DownloadResult(target, digest, written, received[0], resumed_from, False, src.label)


def _transfer(sess: requests.Session, url: str, part: Path, size: int | None,
              progress: ProgressFn | None, cancel: CancelToken, timeout: tuple[float, float],
              name: str, received: list[int], limits: Limits, deadline: float) -> tuple[hashlib._Hash, int]:
    """One HTTP attempt; returns (hash of the whole file, its size); counts into `received`."""
    import requests
    import urllib3

    if time.monotonic() > deadline:
        raise _over_deadline(url, name, part, limits)
    have = part.stat().st_size if part.exists() else 0
    if size and have > size:
        have = _truncate(part)
    h = hashlib.sha256()
    if have:
        _hash_into(h, part, cancel)
    resp = _open(sess, url, have, timeout, name)
    with resp:
        if resp.status_code == 416:
            whole = _content_range_total(resp.headers.get("Content-Range", ""))
            if have and whole == have:  # the .part was already complete
                return h, have
            _truncate(part)
            raise _Retry("the server refused to resume; starting again")
        if resp.status_code == 206:
            start = _content_range_start(resp.headers.get("Content-Range", ""))
            if start != have:
                _truncate(part)
                raise _Retry(f"the server resumed at byte {start}, not {have}; starting again")
            mode = "ab"
        else:  # 200: the whole file, whatever we asked for
            if have:
                log.info("server ignored the resume request for %s; starting over", name)
                have = 0
                h = hashlib.sha256()
            mode = "wb"
        length = resp.headers.get("Content-Length")
        total: int | None = have + int(length) if length and length.isdigit() else size
        # A body stops at the size the catalog gives (or the server announced), and never
        # passes the limit, however much the server goes on sending.
        cap = min(size or total or limits.max_bytes, limits.max_bytes)
        if total is not None and total > cap:
            raise DownloadError(f"{_host(url)} announces {total} bytes for {name}, more than "
                                f"{'its published size' if size else 'any model file'} ({cap} bytes); refused")
        done = have
        window = (time.monotonic(), done)
        if progress:
            progress(done, total)
        try:
            with open(part, mode) as f:
                for chunk in _body_chunks(resp):
                    if is_cancelled(cancel):
                        raise Cancelled(f"download of {name} cancelled; {done} bytes are kept in "
                                        f"{part} and the next download resumes from there")
                    if not chunk:
                        continue
                    if done + len(chunk) > cap:
                        f.close()
                        _truncate(part)  # not the file: nothing of it is worth keeping
                        raise DownloadError(f"{_host(url)} sent more than {cap} bytes for {name} "
                                            f"({'its published size' if size else 'the most any model file has'}); "
                                            "stopped and discarded")
                    now = time.monotonic()
                    if now > deadline:
                        raise _over_deadline(url, name, part, limits)
                    if now - window[0] >= limits.rate_window_s:
                        rate = (done + len(chunk) - window[1]) / (now - window[0])
                        if rate < limits.min_rate:
                            raise DownloadError(
                                f"{_host(url)} is sending {name} at {rate:.0f} bytes/s, below the minimum of "
                                f"{limits.min_rate:.0f} (STYLECLIP_DOWNLOAD_MIN_RATE); {done} bytes are kept "
                                f"in {part} and the next download resumes from there")
                        window = (now, done + len(chunk))
                    try:
                        f.write(chunk)
                    except OSError as exc:
                        raise _disk_error(exc, part, total, done) from exc
                    h.update(chunk)
                    done += len(chunk)
                    received[0] += len(chunk)
                    if progress:
                        progress(done, total)
                try:
                    f.flush()
                    os.fsync(f.fileno())
                except OSError as exc:
                    raise _disk_error(exc, part, total, done) from exc
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
                urllib3.exceptions.HTTPError, ConnectionError, TimeoutError) as exc:
            raise _Retry(f"the connection to {_host(url)} broke after {done} bytes "
                         f"({type(exc).__name__})") from exc
        if total is not None and done < total:
            raise _Retry(f"the connection to {_host(url)} closed after {done} of {total} bytes")
        return h, done


def _over_deadline(url: str, name: str, part: Path, limits: Limits) -> DownloadError:
    have = part.stat().st_size if part.exists() else 0
    return DownloadError(f"downloading {name} from {_host(url)} took longer than {limits.deadline_s:.0f} s "
                         f"(STYLECLIP_DOWNLOAD_DEADLINE); {have} bytes are kept in {part} and the next "
                         "download resumes from there")


def _body_chunks(resp: requests.Response) -> Iterator[bytes]:
    """The body as it arrives. `read1` hands over every byte received before a dropped
    connection; a plain `read(n)` waits to fill n bytes and loses them when the link drops."""
    raw = resp.raw
    if not hasattr(raw, "read1"):  # urllib3 1.x
        while data := raw.read(64 * 1024, decode_content=False):
            yield data
        return
    while True:
        # Never decoded: identity was asked for, and a server that gzips anyway must not
        # turn 1 MB on the wire into 1 GB on disk. The bytes then fail the content check.
        data = raw.read1(CHUNK, decode_content=False)
        if not data:
            return
        yield data


def _open(sess: requests.Session, url: str, have: int, timeout: tuple[float, float],
          name: str) -> requests.Response:
    """GET `url` (from byte `have`), following redirects and Google Drive's confirm pages.

    Redirects are followed here, not by requests, so that every hop goes through the mirror
    and a relative Location resolves against the published URL."""
    import requests

    for _hop in range(_MAX_HOPS):
        # identity encoding keeps byte offsets meaningful for Range
        headers = {"Accept-Encoding": "identity", **({"Range": f"bytes={have}-"} if have else {})}
        scheme = urlsplit(url).scheme.lower()
        if scheme not in ("http", "https"):
            raise DownloadError(f"the download of {name} was sent to a {scheme or 'relative'}: address "
                                f"({url[:120]}); only http and https are followed")
        try:
            resp = sess.get(mirrored(url), headers=headers, stream=True, timeout=timeout,
                            allow_redirects=False)
        except requests.Timeout as exc:
            raise _Retry(f"{_host(url)} did not answer within {timeout[1]:.0f} s") from exc
        except requests.ConnectionError as exc:
            raise DownloadError(f"cannot reach {_host(url)} to download {name} "
                                "(no network connection, or the server is down)") from exc
        except (requests.RequestException, ValueError) as exc:  # a malformed address or answer
            raise DownloadError(f"{_host(url)} cannot be asked for {name}: "
                                f"{' '.join(str(exc).split())[:200]}") from exc
        if resp.is_redirect and resp.headers.get("Location"):
            url = urljoin(url, unmirrored(resp.headers["Location"]))
            resp.close()
            continue
        if resp.status_code in (200, 206, 416) and not _is_html(resp):
            return resp
        body = _read_text(resp)
        resp.close()
        if _is_html(resp) or resp.status_code in (403, 429):
            cookies = {c.name: c.value or "" for c in resp.cookies}
            nxt = gdrive.next_drive_url(url, body, cookies)
            if nxt is not None and resp.status_code in (200, 206):
                url = unmirrored(nxt)
                continue
            if gdrive.is_quota_page(body) or (resp.status_code == 429 and "google" in _host(url)):
                raise gdrive.DriveQuotaExceeded(name)
        raise _http_error(resp.status_code, url, name)
    raise DownloadError(f"{_host(url)} kept sending redirects or confirmation pages instead of {name}; "
                        "download it in a browser and import it with `models import`")


def _http_error(status: int, url: str, name: str) -> Exception:
    host = _host(url)
    if status in (200, 206):
        return DownloadError(f"{host} sent a web page instead of {name} (a login or notice page?); "
                             "download it in a browser and import it with `models import`")
    if status in (404, 410):
        return DownloadError(f"{name} is no longer at {url} (HTTP {status}); download it by hand "
                             "and import it with `models import`")
    if status in (401, 403):
        return DownloadError(f"{host} refused access to {name} (HTTP {status})")
    if status == 429:
        return DownloadError(f"{host} is limiting downloads (HTTP 429); try again later")
    if status >= 500:
        return _Retry(f"{host} had a server error (HTTP {status})")
    return DownloadError(f"{host} answered HTTP {status} for {name}")


def _disk_error(exc: OSError, part: Path, total: int | None, done: int) -> Exception:
    if exc.errno == errno.ENOSPC:
        need = f" (about {(total - done) / 1e6:.0f} MB more are needed)" if total else ""
        free = shutil.disk_usage(part.parent).free if part.parent.exists() else 0
        return DiskFull(f"the disk is full while writing {part}{need}; {free / 1e6:.0f} MB are free. "
                         f"Free some space and download again: it resumes from byte {done}")
    return UserError(f"cannot write {part}: {exc.strerror or exc}")


def _truncate(part: Path) -> int:
    with open(part, "wb"):
        pass
    return 0


def _is_html(resp: requests.Response) -> bool:
    return resp.headers.get("Content-Type", "").split(";")[0].strip().lower() in ("text/html",
                                                                                 "application/xhtml+xml")


def _read_text(resp: requests.Response) -> str:
    """At most 2 MB of a page, decoded by hand so that a compressed page cannot inflate."""
    try:
        data = resp.raw.read(_MAX_HTML, decode_content=False) if resp.raw is not None else b""
    except Exception:
        data = b""
    encoding = resp.headers.get("Content-Encoding", "").strip().lower()
    if encoding in ("gzip", "deflate"):
        try:
            data = zlib.decompressobj(wbits=47).decompress(data, _MAX_HTML)  # 47: gzip or zlib header
        except zlib.error:
            data = b""
    return data.decode(resp.encoding or "utf-8", errors="replace")


def _host(url: str) -> str:
    return urlsplit(url).netloc or url


def _content_range_start(value: str) -> int | None:
    m = re.match(r"\s*bytes\s+(\d+)-\d+/(\d+|\*)", value)
    return int(m.group(1)) if m else None


def _content_range_total(value: str) -> int | None:
    m = re.match(r"\s*bytes\s+(?:\*|\d+-\d+)/(\d+)", value)
    return int(m.group(1)) if m else None
