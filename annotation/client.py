"""Connecting to Label Studio through ``label-studio-sdk``, with errors mapped to exit code 3.

The URL comes from ``--url`` or ``LABEL_STUDIO_URL``; the token from ``LABEL_STUDIO_USER_TOKEN``
or a file named by ``--token-file`` (never a command-line value). Every error message passes
through :func:`scrub` so the token cannot leak into output or logs, whatever a library puts in
its exception text.
"""

from __future__ import annotations

import contextlib
import dataclasses
import html
import json
import os
import re
import time
import urllib.parse
from collections.abc import Iterator

from mcie import extras
from mcie.exitcodes import ServiceError, UsageError

ENV_URL = "LABEL_STUDIO_URL"
ENV_TOKEN = "LABEL_STUDIO_USER_TOKEN"
DEFAULT_URL = "http://127.0.0.1:8080"
#: seconds a bulk request may take on the server before we give up on it
BULK_READ_TIMEOUT_S = 600.0


def _require_sdk():
    extras.require("annotation", "Label Studio support")  # before any server is contacted


@dataclasses.dataclass
class Connection:
    """Where the server is and how to authenticate. ``repr`` never shows the token."""

    url: str
    token: str = dataclasses.field(repr=False)

    def __post_init__(self) -> None:
        parsed = urllib.parse.urlparse(self.url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise UsageError(f"Label Studio URL {self.url!r} is not an http(s) URL")
        self.url = self.url.rstrip("/")
        if not self.token:
            raise UsageError(f"no Label Studio token: set {ENV_TOKEN} or pass --token-file")

    @property
    def is_local(self) -> bool:
        """True when the server runs on this machine (it can then read our image files)."""
        return urllib.parse.urlparse(self.url).hostname in ("127.0.0.1", "localhost", "::1")

    @classmethod
    def from_args(cls, url: str | None, token_file: str | None) -> Connection:
        url = url or os.environ.get(ENV_URL) or DEFAULT_URL
        if token_file:
            try:
                with open(token_file) as fh:
                    token = fh.read().strip()
            except OSError as exc:
                raise UsageError(f"cannot read the token file {token_file!r}: {exc.strerror}") from None
        else:
            token = os.environ.get(ENV_TOKEN, "")
        return cls(url=url, token=token)

    def scrub(self, text: str) -> str:
        """``text`` with the token replaced by ``***``."""
        return text.replace(self.token, "***") if self.token else text

    @contextlib.contextmanager
    def errors(self, doing: str) -> Iterator[None]:
        """Turn SDK/HTTP failures while ``doing`` something into a ServiceError (exit 3)."""
        import httpx
        from label_studio_sdk.core.api_error import ApiError

        try:
            yield
        except ApiError as exc:
            code = exc.status_code
            if code in (401, 403):
                what = "refused our token (wrong LABEL_STUDIO_USER_TOKEN, or the legacy token is off)"
            elif code == 404:
                what = "has no such object (404)"
            else:
                what = f"answered {code}: {one_line(exc.body)}"
            raise ServiceError(self.scrub(f"Label Studio at {self.url} {what} while {doing}")) from None
        except httpx.HTTPError as exc:
            msg = f"Label Studio at {self.url} is unreachable while {doing}: {type(exc).__name__}: {exc}"
            raise ServiceError(self.scrub(msg)) from None

    def client(self):
        """A checked ``label_studio_sdk.LabelStudio`` client (whoami answered)."""
        _require_sdk()
        from label_studio_sdk import LabelStudio

        ls = LabelStudio(base_url=self.url, api_key=self.token, timeout=120)
        with self.errors("checking the token"):
            ls.users.whoami()
        return ls


def http(conn: Connection):
    """A plain ``httpx.Client`` on the server's API with the token, for the bulk calls (a page of
    tasks, a batch of tasks to import): the SDK walks such bodies value by value through its
    models and encoders, and a brush RLE is thousands of integers. Pass each response to
    :func:`json_of`; use inside :meth:`Connection.errors`. Its ``request_s`` counts the seconds
    spent waiting for answers (the server's share of a command's time)."""
    import httpx

    class _Client(httpx.Client):
        request_s = 0.0

        def send(self, request, **kwargs):
            t0 = time.perf_counter()
            try:
                response = super().send(request, **kwargs)
                if not kwargs.get("stream"):  # a streamed download is read (and timed) by its caller
                    response.read()
                return response
            finally:
                self.request_s += time.perf_counter() - t0

    return _Client(
        base_url=conn.url,
        headers={"Authorization": f"Token {conn.token}"},
        # a large import is one transaction on the server: give it time to answer
        timeout=httpx.Timeout(30.0, read=BULK_READ_TIMEOUT_S),
    )


def json_of(response) -> object:
    """The response's JSON; an HTTP error status raises the SDK's ``ApiError`` (as the SDK's own
    calls do), so :meth:`Connection.errors` maps it to the same exit codes and messages."""
    from label_studio_sdk.core.api_error import ApiError

    if response.status_code >= 400:
        try:
            body = response.json()
        except ValueError:
            body = response.text
        raise ApiError(status_code=response.status_code, headers=dict(response.headers), body=body)
    return response.json()


def task_page(h, project_id: int, page: int, page_size: int, fields: str = "task_only") -> tuple[list, int]:
    """One page of a project's tasks as plain dicts, and the project's task count. ``fields``:
    ``task_only`` (data, no annotations) or ``all`` (with annotations and predictions). Data
    URLs are not resolved: none of our callers opens them."""
    params = {
        "project": project_id,
        "page": page,
        "page_size": page_size,
        "fields": fields,
        "resolve_uri": "false",
    }
    got = json_of(h.get("/api/tasks/", params=params))
    return got["tasks"], int(got["total"])


def iter_tasks(h, project_id: int, page_size: int = 1000, fields: str = "task_only"):
    """Every task of a project, a page at a time (see :func:`task_page`)."""
    page, seen = 1, 0
    while True:
        tasks, total = task_page(h, project_id, page, page_size, fields)
        yield from tasks
        seen += len(tasks)
        if not tasks or seen >= total:
            return
        page += 1


def one_line(body: object, limit: int = 200) -> str:
    """A server's error body as one short line: an HTML page (Django's 500 page, a proxy's)
    becomes its title or its first text, markup and whitespace runs dropped, cut at ``limit``."""
    text = (
        body if isinstance(body, str) else json.dumps(body) if isinstance(body, (dict, list)) else str(body)
    )
    title = re.search(r"<title[^>]*>(.*?)</title>", text, re.S | re.I)
    if title and title.group(1).strip():
        text = title.group(1)
    text = re.sub(r"<(script|style)\b.*?</\1>", " ", text, flags=re.S | re.I)
    text = " ".join(html.unescape(re.sub(r"<[^>]*>", " ", text)).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


#: request options for a call that creates something: the sdk retries a request after a dropped
#: connection or a 5xx, which for a create that did reach the server makes a second project of
#: the same title (seen once under load); a failed create is reported and the rerun finds it.
NO_RETRY = {"max_retries": 0}


def find_project(ls, conn: Connection, title: str | None, project_id: int | None = None):
    """The project titled ``title`` (or with id ``project_id``), or None when there is none.

    Label Studio allows several projects with one title; picking one of them would send
    exports and imports to a project the reviewers may not be using, so a title that names
    more than one project is refused (exit 1) with their ids, to choose with ``--project-id``."""
    if project_id is not None:
        with conn.errors(f"looking up project id {project_id}"):
            p = ls.projects.get(id=project_id)
        if title is not None and p.title != title:
            raise UsageError(f"project id {project_id} is titled {p.title!r}, not {title!r}")
        return p
    with conn.errors(f"looking up project {title!r}"):
        found = [p for p in ls.projects.list(title=title) if p.title == title]
    if len(found) > 1:
        ids = ", ".join(str(p.id) for p in sorted(found, key=lambda p: p.id))
        raise UsageError(
            f"{len(found)} Label Studio projects are titled {title!r} (ids {ids}); "
            "choose one with --project-id"
        )
    return found[0] if found else None


def require_project(ls, conn: Connection, title: str | None, project_id: int | None = None):
    """The project titled ``title`` (or with id ``project_id``); ServiceError (exit 3) when
    the server has none."""
    p = find_project(ls, conn, title, project_id)
    if p is None:
        raise ServiceError(f"Label Studio at {conn.url} has no project {title!r}")
    return p
