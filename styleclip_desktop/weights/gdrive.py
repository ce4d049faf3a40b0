"""Getting past Google Drive's interstitial pages.

Several official checkpoints (e4e, ArcFace, the mappers, rosinality's generator) are only
published on Google Drive. For files too large to virus-scan, Drive answers the download
URL with an HTML page instead of the file: either a `download_warning*` cookie whose
value must be sent back as `confirm=`, or (drive.usercontent.google.com) a form with
hidden `id`/`export`/`confirm`/`uuid` fields to submit. When too many people fetched a
file that day, it sends a quota page instead. These pages change shape now and then, so
the parsing is a small function of (url, body, cookies) tested on its own.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from html.parser import HTMLParser
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

from styleclip_desktop.errors import UserError

QUOTA_MESSAGE = ("Google Drive says the file's download quota is exceeded; try again in 24 h "
                 "or import the file with `models import`")

_QUOTA_MARKERS = (
    "too many users have viewed or downloaded this file recently",
    "download quota",
    "quota exceeded",
)


class DriveQuotaExceeded(UserError):
    """Google Drive refuses the file until its daily download quota resets."""

    def __init__(self, what: str = "") -> None:
        super().__init__(f"{what}: {QUOTA_MESSAGE}" if what else QUOTA_MESSAGE)


class _FormParser(HTMLParser):
    """Collects each form's action and its hidden inputs."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[tuple[str, str, dict[str, str]]] = []  # (id, action, fields)
        self._current: tuple[str, str, dict[str, str]] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self._current = (a.get("id", ""), a.get("action", ""), {})
            self.forms.append(self._current)
        elif tag == "input" and self._current is not None and a.get("name"):
            if a.get("type", "text").lower() in ("hidden", "text"):
                self._current[2][a["name"]] = a.get("value", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._current = None


def with_query(url: str, **params: str) -> str:
    """`url` with `params` set in its query string (replacing existing values)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in params]
    query += list(params.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


def is_quota_page(body: str) -> bool:
    text = body.lower()
    return any(m in text for m in _QUOTA_MARKERS)


def next_drive_url(url: str, body: str, cookies: Mapping[str, str]) -> str | None:
    """Where to go after Drive answered `url` with an HTML page; None if this is no Drive page.

    Raises `DriveQuotaExceeded` for the quota page.
    """
    for name, value in cookies.items():
        if name.startswith("download_warning") and value:
            return with_query(url, confirm=value)
    parser = _FormParser()
    try:
        parser.feed(body)
    except Exception:  # a malformed page is simply not a confirm page
        parser.forms = []
    forms = sorted(parser.forms, key=lambda f: f[0] != "download-form")
    for form_id, action, fields in forms:
        if form_id == "download-form" or ("confirm" in fields and "id" in fields):
            target = urljoin(url, html.unescape(action)) if action else url
            return with_query(target, **fields) if fields else target
    m = re.search(r'href="([^"]*[?&](?:amp;)?confirm=[^"]+)"', body)
    if m:
        return urljoin(url, html.unescape(m.group(1)))
    if is_quota_page(body):
        raise DriveQuotaExceeded()
    return None
