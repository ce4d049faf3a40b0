"""The downloader against a misbehaving local server: resume, restart, checksum,
concurrency, cancel, disk full and Google Drive's interstitial pages."""

from __future__ import annotations

import errno
import hashlib
import multiprocessing
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from styleclip_desktop.errors import Cancelled, UserError
from styleclip_desktop.weights import download as dl
from styleclip_desktop.weights import gdrive
from styleclip_desktop.weights.download import ChecksumMismatch, DownloadError, download_file, part_path
from styleclip_desktop.weights.identify import LFS_POINTER_VERSION

from .http_server import CONFIRM_PAGE, COOKIE_PAGE, QUOTA_PAGE, FileServer, download_worker

BODY = os.urandom(3 * 1024 * 1024 + 123)
SHA = hashlib.sha256(BODY).hexdigest()


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FileServer]:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    with FileServer() as s:
        yield s


def _get(url: str, target: Path, **kw: Any) -> dl.DownloadResult:
    kw.setdefault("retry_wait", 0)
    return download_file(url, target, **kw)


def test_plain_download_verifies_and_reports_progress(server: FileServer, tmp_path: Path) -> None:
    server.add("/m.bin", BODY)
    seen: list[tuple[int, int | None]] = []
    res = _get(server.url("/m.bin"), tmp_path / "m.bin", sha256=SHA, progress=lambda d, t: seen.append((d, t)))
    assert (tmp_path / "m.bin").read_bytes() == BODY
    assert res.sha256 == SHA and res.size == len(BODY) and not res.reused
    assert not part_path(tmp_path / "m.bin").exists()
    assert seen[-1] == (len(BODY), len(BODY))
    assert all(a[0] <= b[0] for a, b in zip(seen, seen[1:], strict=False))


def test_cut_download_resumes_with_only_the_remaining_bytes(server: FileServer, tmp_path: Path) -> None:
    route = server.add("/m.bin", BODY, cut_after=1_000_000, cuts=1)
    target = tmp_path / "m.bin"
    with pytest.raises(DownloadError, match="resumes from there"):
        _get(server.url("/m.bin"), target, sha256=SHA, retries=0)
    kept = part_path(target).stat().st_size
    assert 0 < kept <= 1_000_000
    sent_before = route.sent
    res = _get(server.url("/m.bin"), target, sha256=SHA, retries=0)
    assert target.read_bytes() == BODY
    assert route.requests[-1]["range"] == f"bytes={kept}-"
    assert route.sent - sent_before == len(BODY) - kept  # only the rest went over the wire
    assert res.resumed_from == kept and res.transferred == len(BODY) - kept


def test_cut_download_retries_by_itself(server: FileServer, tmp_path: Path) -> None:
    route = server.add("/m.bin", BODY, cut_after=700_000, cuts=2)
    res = _get(server.url("/m.bin"), tmp_path / "m.bin", sha256=SHA, retries=3)
    assert (tmp_path / "m.bin").read_bytes() == BODY
    assert len(route.requests) == 3
    assert route.sent == len(BODY)
    assert res.transferred == len(BODY)


def test_server_without_range_support_restarts_from_zero(server: FileServer, tmp_path: Path) -> None:
    route = server.add("/m.bin", BODY, range_support=False, cut_after=500_000, cuts=1)
    target = tmp_path / "m.bin"
    with pytest.raises(DownloadError):
        _get(server.url("/m.bin"), target, sha256=SHA, retries=0)
    assert part_path(target).stat().st_size > 0
    res = _get(server.url("/m.bin"), target, sha256=SHA, retries=0)
    assert route.requests[-1].get("range", "").startswith("bytes=")  # we asked...
    assert target.read_bytes() == BODY  # ...it sent everything, and the .part was truncated first
    assert res.transferred == len(BODY)


def test_complete_part_file_is_finished_without_refetching(server: FileServer, tmp_path: Path) -> None:
    route = server.add("/m.bin", BODY)
    target = tmp_path / "m.bin"
    part_path(target).write_bytes(BODY)
    res = _get(server.url("/m.bin"), target, sha256=SHA)
    assert route.sent == 0 and res.transferred == 0
    assert target.read_bytes() == BODY


def test_checksum_mismatch_is_quarantined(server: FileServer, tmp_path: Path) -> None:
    wrong = b"x" * 200_000
    server.add("/m.bin", BODY, wrong_body=wrong)
    target = tmp_path / "m.bin"
    with pytest.raises(ChecksumMismatch) as info:
        _get(server.url("/m.bin"), target, sha256=SHA)
    msg = str(info.value)
    got = hashlib.sha256(wrong).hexdigest()
    assert SHA in msg and got in msg and "quarantine" in msg
    assert not target.exists() and not part_path(target).exists()
    moved = info.value.moved_to
    assert moved.parent == tmp_path / "quarantine" and moved.read_bytes() == wrong


def test_content_check_failure_is_quarantined(server: FileServer, tmp_path: Path) -> None:
    server.add("/m.bin", BODY)

    def refuse(path: Path) -> None:
        from styleclip_desktop.errors import ModelFileError

        raise ModelFileError("its content is not a model")

    with pytest.raises(UserError, match="not the expected file.*quarantine"):
        _get(server.url("/m.bin"), tmp_path / "m.bin", validate=refuse)
    assert len(list((tmp_path / "quarantine").iterdir())) == 1


def test_damaged_existing_file_is_replaced(server: FileServer, tmp_path: Path) -> None:
    server.add("/m.bin", BODY)
    target = tmp_path / "m.bin"
    target.write_bytes(b"old and wrong")
    _get(server.url("/m.bin"), target, sha256=SHA)
    assert target.read_bytes() == BODY
    assert len(list((tmp_path / "quarantine").iterdir())) == 1


def test_cancel_leaves_a_resumable_part(server: FileServer, tmp_path: Path) -> None:
    route = server.add("/m.bin", BODY, chunk=128 * 1024)
    target = tmp_path / "m.bin"
    stop = threading.Event()

    def progress(done: int, total: int | None) -> None:
        if done >= 1_000_000:
            stop.set()

    with pytest.raises(Cancelled, match="resumes"):
        _get(server.url("/m.bin"), target, sha256=SHA, progress=progress, cancel=stop)
    kept = part_path(target).stat().st_size
    assert kept >= 1_000_000 and not target.exists()
    res = _get(server.url("/m.bin"), target, sha256=SHA, cancel=lambda: False)
    assert target.read_bytes() == BODY
    assert route.requests[-1]["range"] == f"bytes={kept}-"
    assert res.resumed_from == kept


def test_two_threads_download_the_same_file_once(server: FileServer, tmp_path: Path) -> None:
    route = server.add("/m.bin", BODY, delay=0.005)
    target = tmp_path / "m.bin"
    results: list[dl.DownloadResult] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(_get(server.url("/m.bin"), target, sha256=SHA))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert target.read_bytes() == BODY
    assert sorted(r.reused for r in results) == [False, True]
    assert route.sent == len(BODY)


def test_two_processes_download_the_same_file_once(server: FileServer, tmp_path: Path) -> None:
    route = server.add("/m.bin", BODY, delay=0.02)
    target = tmp_path / "m.bin"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=download_worker,
                         args=(server.url("/m.bin"), str(target), SHA, str(tmp_path / f"out{i}.txt")))
             for i in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    assert target.read_bytes() == BODY
    outcomes = sorted((tmp_path / f"out{i}.txt").read_text().split()[0] for i in range(2))
    assert outcomes == ["False", "True"]  # one downloaded, the other waited and verified
    assert route.sent == len(BODY) and len(route.requests) == 1


def test_disk_full_keeps_the_part_and_says_so(server: FileServer, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    server.add("/m.bin", BODY)
    real_open = open

    class Full:
        def __init__(self, f: Any) -> None:
            self.f, self.n = f, 0

        def write(self, data: bytes) -> int:
            if self.n + len(data) > 1_500_000:
                raise OSError(errno.ENOSPC, "No space left on device")
            self.n += len(data)
            return int(self.f.write(data))

        def __getattr__(self, name: str) -> Any:
            return getattr(self.f, name)

        def __enter__(self) -> Full:
            return self

        def __exit__(self, *a: object) -> None:
            self.f.close()

    def fake_open(path: Any, mode: str = "r", *a: Any, **k: Any) -> Any:
        f = real_open(path, mode, *a, **k)
        return Full(f) if "a" in mode or "w" in mode else f

    monkeypatch.setattr(dl, "open", fake_open, raising=False)
    target = tmp_path / "m.bin"
    with pytest.raises(UserError, match="disk is full") as info:
        _get(server.url("/m.bin"), target, sha256=SHA)
    assert "resumes from byte" in str(info.value)
    assert part_path(target).stat().st_size > 0
    monkeypatch.undo()
    with FileServer() as s2:
        s2.add("/m.bin", BODY)
        _get(s2.url("/m.bin"), target, sha256=SHA)
    assert target.read_bytes() == BODY


def test_http_errors_are_explained_and_the_next_source_is_tried(server: FileServer, tmp_path: Path) -> None:
    server.add("/gone", BODY, status=404)
    server.add("/ok", BODY)
    res = _get([server.url("/gone"), server.url("/ok")], tmp_path / "m.bin", sha256=SHA)
    assert res.size == len(BODY)
    with pytest.raises(DownloadError, match=r"HTTP 404.*models import"):
        _get(server.url("/gone"), tmp_path / "n.bin")
    server.add("/denied", BODY, status=403)
    with pytest.raises(DownloadError, match="refused access"):
        _get(server.url("/denied"), tmp_path / "n.bin")


def test_unreachable_server_is_a_clear_error(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DownloadError, match="cannot reach"):
        _get(f"http://127.0.0.1:{port}/x", tmp_path / "x.bin", timeout=(2, 2))


def test_web_page_instead_of_a_file_is_refused(server: FileServer, tmp_path: Path) -> None:
    server.add("/page", b"", status=200)
    with pytest.raises(DownloadError, match="web page"):
        _get(server.url("/page"), tmp_path / "m.bin")


# --- Google Drive ---------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["form", "cookie"])
def test_google_drive_confirm_flow(server: FileServer, tmp_path: Path, mode: str) -> None:
    route = server.add("/download", BODY, gdrive=mode)
    res = _get(server.url("/download?id=abc&export=download"), tmp_path / "e4e.pt", sha256=SHA)
    assert (tmp_path / "e4e.pt").read_bytes() == BODY and res.size == len(BODY)
    assert len(route.requests) == 2


def test_google_drive_confirm_flow_resumes(server: FileServer, tmp_path: Path) -> None:
    route = server.add("/download", BODY, gdrive="form", cut_after=800_000, cuts=1)
    target = tmp_path / "e4e.pt"
    with pytest.raises(DownloadError):
        _get(server.url("/download?id=abc"), target, sha256=SHA, retries=0)
    kept = part_path(target).stat().st_size
    _get(server.url("/download?id=abc"), target, sha256=SHA, retries=0)
    assert target.read_bytes() == BODY
    assert route.requests[-1]["range"] == f"bytes={kept}-"


@pytest.mark.parametrize("status", [None, 403])
def test_google_drive_quota(server: FileServer, tmp_path: Path, status: int | None) -> None:
    server.add("/download", BODY, gdrive="quota", status=status)
    with pytest.raises(gdrive.DriveQuotaExceeded) as info:
        _get(server.url("/download?id=abc"), tmp_path / "e4e.pt", what="e4e encoder")
    msg = str(info.value)
    assert "quota is exceeded" in msg and "24 h" in msg and "models import" in msg


LOCAL = "http://127.0.0.1:9"


def test_drive_page_parsing_form() -> None:
    page = CONFIRM_PAGE.format(action=f"{LOCAL}/download", file_id="F1", uuid="u-123")
    nxt = gdrive.next_drive_url(f"{LOCAL}/download?id=F1&export=download", page, {})
    assert nxt is not None
    assert nxt.startswith(f"{LOCAL}/download?")
    for part in ("id=F1", "export=download", "confirm=t", "uuid=u-123"):
        assert part in nxt


def test_drive_page_parsing_cookie_and_link() -> None:
    url = f"{LOCAL}/uc?export=download&id=F1"
    nxt = gdrive.next_drive_url(url, "<html></html>", {"download_warning_123_F1": "TOK"})
    assert nxt is not None and "confirm=TOK" in nxt and "id=F1" in nxt
    page = COOKIE_PAGE.format(token="T9", file_id="F1")
    nxt = gdrive.next_drive_url(url, page, {})
    assert nxt == f"{LOCAL}/uc?export=download&confirm=T9&id=F1"


def test_drive_page_parsing_quota_and_others() -> None:
    with pytest.raises(gdrive.DriveQuotaExceeded):
        gdrive.next_drive_url(f"{LOCAL}/uc?id=F", QUOTA_PAGE, {})
    assert gdrive.next_drive_url(f"{LOCAL}/x", "<html><form id='search'></form></html>", {}) is None
    assert gdrive.with_query(f"{LOCAL}/p?a=1&confirm=x", confirm="t") == f"{LOCAL}/p?a=1&confirm=t"


# --- several sources: every one is tried, whatever the one before answered -------------

LFS_POINTER = LFS_POINTER_VERSION + b"oid sha256:" + SHA.encode() + f"\nsize {len(BODY)}\n".encode()


def _not_a_pointer(path: Path) -> None:
    from styleclip_desktop.errors import ModelFileError

    if path.read_bytes().startswith(LFS_POINTER_VERSION):
        raise ModelFileError("its content is a Git LFS pointer")


@pytest.mark.parametrize("first", ["quota", "pointer", "truncated", "wrong-hash", "404"])
def test_a_bad_first_source_falls_through_to_the_next(server: FileServer, tmp_path: Path, first: str) -> None:
    options: dict[str, Any] = {
        "quota": {"gdrive": "quota"}, "pointer": {"wrong_body": LFS_POINTER},
        "truncated": {"cut_after": 1000, "cuts": 99}, "wrong-hash": {"wrong_body": BODY[::-1]},
        "404": {"status": 404}}[first]
    server.add("/first", BODY, **options)
    second = server.add("/second", BODY)
    target = tmp_path / "m.bin"
    res = download_file([server.url("/first"), server.url("/second")], target, sha256=SHA, retries=1,
                        retry_wait=0, validate=_not_a_pointer)
    assert target.read_bytes() == BODY and res.source == server.label("/second")
    assert second.requests and "range" not in second.requests[0]  # nothing of /first was appended to
    assert not part_path(target).exists()
    if first in ("pointer", "wrong-hash"):  # a bad file is kept aside, never deleted
        assert len(list((tmp_path / "quarantine").iterdir())) == 1


def test_every_source_failing_says_what_each_answered(server: FileServer, tmp_path: Path) -> None:
    server.add("/quota", BODY, gdrive="quota")
    server.add("/pointer", BODY, wrong_body=LFS_POINTER)
    server.add("/gone", BODY, status=404)
    with pytest.raises(DownloadError) as info:
        download_file([server.url("/quota"), server.url("/pointer"), server.url("/gone")], tmp_path / "m.bin",
                      retry_wait=0, validate=_not_a_pointer, what="the encoder")
    lines = str(info.value).splitlines()
    assert lines[0] == "every source for the encoder failed (3 tried):"
    assert len(lines) == 4 and all(line.startswith("  127.0.0.1:") for line in lines[1:])
    assert "quota" in lines[1] and "Git LFS pointer" in lines[2] and "HTTP 404" in lines[3]
    assert [s.url for s, _ in info.value.failures] == [server.url(p) for p in ("/quota", "/pointer", "/gone")]


def test_a_hash_recorded_from_one_source_does_not_bind_another(server: FileServer, tmp_path: Path) -> None:
    other = BODY[::-1]  # an equally good file that the second source publishes
    server.add("/a", BODY, status=503)
    server.add("/b", other)
    label_a = server.label("/a")
    res = download_file([server.url("/a"), server.url("/b")], tmp_path / "m.bin", retries=0, retry_wait=0,
                        source_hashes={label_a: SHA})
    assert res.sha256 == hashlib.sha256(other).hexdigest()
    label_b = server.label("/b")
    with pytest.raises(ChecksumMismatch):  # but it does bind the source it was recorded from
        download_file(server.url("/b"), tmp_path / "n.bin", retry_wait=0, source_hashes={label_b: SHA})


def test_a_partial_download_is_resumed_from_its_own_source_first(server: FileServer, tmp_path: Path) -> None:
    server.add("/a", BODY, status=404)
    b = server.add("/b", BODY, cut_after=1_000_000, cuts=1)
    target = tmp_path / "m.bin"
    urls = [server.url("/a"), server.url("/b")]
    with pytest.raises(DownloadError):
        download_file(urls, target, sha256=SHA, retries=0, retry_wait=0)
    kept = part_path(target).stat().st_size
    a_before = len(server.routes["/a"].requests)
    download_file(urls, target, sha256=SHA, retries=0, retry_wait=0)
    assert target.read_bytes() == BODY and b.requests[-1]["range"] == f"bytes={kept}-"
    assert len(server.routes["/a"].requests) == a_before  # /b was asked first, and gave the rest


def test_the_mirror_takes_every_request_redirects_included(server: FileServer, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # A published URL (https, on a host of its own) reaches the mirror, never its host:
    # "localhost" stands in for the host so that even a miss could not leave this machine.
    published = "https://localhost"
    server.add("/localhost/model.bin", BODY)
    monkeypatch.setenv(dl.MIRROR_ENV, server.base + "/")
    assert dl.mirrored(published + "/model.bin?x=1") == server.base + "/localhost/model.bin?x=1"
    assert dl.mirrored(server.url("/x")) == server.url("/x")
    assert dl.unmirrored(server.url("/localhost/c")) == published + "/c"
    res = download_file(published + "/model.bin", tmp_path / "m.bin", sha256=SHA, retry_wait=0)
    assert res.size == len(BODY)
    server.add("/localhost/moved", b"", status=302)  # answers with a relative Location below
    server.routes["/localhost/moved"].headers = {"Location": "/blob-elsewhere"}
    server.add("/localhost/blob-elsewhere", BODY)
    download_file(published + "/moved", tmp_path / "n.bin", sha256=SHA, retry_wait=0)
    assert (tmp_path / "n.bin").read_bytes() == BODY


# --- hostile hosts: bounded disk, time and memory; one-line errors ---------------------


def test_an_endless_body_stops_at_the_published_size(server: FileServer, tmp_path: Path) -> None:
    route = server.add("/endless", BODY[:65536], endless=True)
    target = tmp_path / "m.bin"
    with pytest.raises(DownloadError, match="sent more than 1000000 bytes.*published size"):
        _get(server.url("/endless"), target, size=1_000_000, retries=0)
    assert route.sent < 64 << 20 and not target.exists()
    assert not part_path(target).exists() or part_path(target).stat().st_size == 0
    assert not (tmp_path / "quarantine").exists()  # junk is not kept


def test_an_endless_body_stops_at_the_limit_when_no_size_is_known(server: FileServer, tmp_path: Path) -> None:
    server.add("/endless", BODY[:65536], endless=True)
    with pytest.raises(DownloadError, match="sent more than 3000000 bytes"):
        _get(server.url("/endless"), tmp_path / "m.bin", retries=0, limits=dl.Limits(max_bytes=3_000_000))


def test_an_announced_oversize_body_is_refused_before_any_byte(server: FileServer, tmp_path: Path) -> None:
    route = server.add("/big", BODY)
    with pytest.raises(DownloadError, match="announces .* more than its published size"):
        _get(server.url("/big"), tmp_path / "m.bin", size=1000, retries=0)
    # nothing of the body was read: the socket may hold it all, but no byte reached the disk
    part = part_path(tmp_path / "m.bin")
    assert not (tmp_path / "m.bin").exists() and (not part.exists() or part.stat().st_size == 0)
    assert route.requests


def test_a_trickle_is_stopped_by_the_minimum_rate_and_resumes_later(server: FileServer, tmp_path: Path) -> None:
    server.add("/slow", BODY, chunk=64, delay=0.02)
    target = tmp_path / "m.bin"
    with pytest.raises(DownloadError, match="bytes/s, below the minimum.*resumes"):
        _get(server.url("/slow"), target, sha256=SHA, retries=0,
             limits=dl.Limits(min_rate=1e6, rate_window_s=0.3))
    assert 0 < part_path(target).stat().st_size < len(BODY)


def test_an_overall_deadline_ends_a_slow_source(server: FileServer, tmp_path: Path) -> None:
    server.add("/slow", BODY, chunk=4096, delay=0.01)
    with pytest.raises(DownloadError, match="took longer than 0 s"):
        _get(server.url("/slow"), tmp_path / "m.bin", retries=0, limits=dl.Limits(deadline_s=0.3))


def test_limits_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STYLECLIP_DOWNLOAD_MIN_RATE", "10")
    monkeypatch.setenv("STYLECLIP_DOWNLOAD_DEADLINE", "60")
    lim = dl.Limits.from_env()
    assert lim.min_rate == 10 and lim.deadline_s == 60 and lim.max_bytes == dl.Limits().max_bytes
    monkeypatch.setenv("STYLECLIP_DOWNLOAD_MAX_BYTES", "lots")
    with pytest.raises(UserError, match="STYLECLIP_DOWNLOAD_MAX_BYTES must be a number"):
        dl.Limits.from_env()


def test_a_compressed_body_is_never_inflated(server: FileServer, tmp_path: Path) -> None:
    bomb = bytes(64 << 20)  # 64 MB of zeros: about 64 KB gzipped
    server.add("/gz", bomb, gzip=True)
    with pytest.raises(ChecksumMismatch) as info:
        _get(server.url("/gz"), tmp_path / "m.bin", sha256=hashlib.sha256(bomb).hexdigest(), retries=0)
    assert info.value.moved_to.stat().st_size < 1 << 20  # the bytes as sent, not decoded


@pytest.mark.parametrize("location", ["file:///etc/passwd", "ftp://127.0.0.1/x", "/loop"])
def test_bad_redirects_are_one_line_errors(server: FileServer, tmp_path: Path, location: str) -> None:
    server.add("/loop", b"", status=302, headers={"Location": location})
    with pytest.raises(DownloadError) as info:
        _get(server.url("/loop"), tmp_path / "m.bin", retries=0)
    msg = str(info.value)
    assert "\n" not in msg and ("only http and https" in msg or "kept sending redirects" in msg)


def test_the_quarantine_keeps_only_the_newest_few_of_a_model(server: FileServer, tmp_path: Path) -> None:
    target = tmp_path / "m.bin"
    for i in range(dl.QUARANTINE_PER_MODEL + 3):
        server.add(f"/bad{i}", BODY, wrong_body=bytes([i]) * 1000)
        with pytest.raises(ChecksumMismatch):
            _get(server.url(f"/bad{i}"), target, sha256=SHA, retries=0)
    kept = list((tmp_path / "quarantine").iterdir())
    assert len(kept) == dl.QUARANTINE_PER_MODEL
    assert {p.read_bytes()[:1] for p in kept} == {bytes([i]) for i in range(3, 3 + dl.QUARANTINE_PER_MODEL)}
