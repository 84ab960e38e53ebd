"""Reading a project's annotated tasks through Label Studio's export snapshots.

A snapshot (``POST /api/projects/ID/exports/``) is Label Studio's own way to export a large
project: the server serialises the tasks in batches into a file, which is then downloaded in
one streamed response. For ``mcie ls import`` it costs the server about half of what the data
manager's task list does per task (measured: ``benchmarks/notes/scale.md``), because the list
serialises each task's drafts, predictions and computed columns for the browser.

Only annotated tasks are asked for (a task without an annotation stays pending anyway) and,
when export recorded the digests of every task's pre-annotations, the predictions come back as
ids only: they are the largest part of a task.

The snapshot is kept: it stays on the project's Export page, titled ``mcie ls import <UTC
time>``, a record of exactly what that import read. (Deleting it would not remove its file:
Label Studio 1.23 keeps a deleted snapshot's file in its export folder, its removal flag
``ff_back_dev_4664_...`` being forced off; a visible snapshot is better than an orphaned
file.) Each import through a snapshot therefore leaves one file about the size of the
annotations on the server; ``mcie ls import --read list`` writes nothing there.

The download goes to a temporary file and is read one task at a time, so memory holds one
task, whatever the project's size. Anything that keeps a snapshot from being made (an older
server without the API, a failed export, a 5xx) raises :class:`SnapshotUnavailable`: the
caller reads the task list instead.
"""

from __future__ import annotations

import codecs
import datetime
import hashlib
import json
import tempfile
import time
from collections.abc import Iterator
from typing import IO, Any

from mcie.annotation.client import json_of

#: seconds between status checks of a snapshot made in the background (a server with a job
#: queue); a server without one answers the create request when the file is written
POLL_S = 0.5
#: bytes read from the downloaded file at a time
CHUNK = 1 << 20


class SnapshotUnavailable(Exception):
    """The server did not make or serve the snapshot; read the task list instead."""


def _checked(response) -> Any:
    """``json_of`` the response; a 403 (a token that may read tasks but not export: exports
    need the project-change permission), a 404/405 (no snapshot API) or a 5xx (a failed
    export) becomes :class:`SnapshotUnavailable`, anything else raises as ``json_of`` does."""
    if response.status_code in (403, 404, 405) or response.status_code >= 500:
        raise SnapshotUnavailable(f"HTTP {response.status_code}")
    return json_of(response)


def read_annotated(h, project_id: int, with_predictions: bool) -> Iterator[dict]:
    """The project's annotated tasks, one at a time (``h``: :func:`~mcie.annotation.client.http`).
    ``with_predictions``: each task's predictions in full (else their ids). The snapshot is made
    and downloaded (its MD5 checked) before the first task is given, so a failure before then
    raises :class:`SnapshotUnavailable` and nothing was read."""
    body = {
        "title": "mcie ls import " + datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "task_filter_options": {"annotated": "only"},
        "serialization_options": {
            "predictions": {"only_id": not with_predictions},
            "drafts": {"only_id": True},
            "annotations__completed_by": {"only_id": True},
        },
    }
    base = f"/api/projects/{project_id}/exports/"
    snap = _checked(h.post(base, json=body))
    with tempfile.TemporaryFile() as fh:
        while snap.get("status") in ("created", "in_progress"):
            time.sleep(POLL_S)
            snap = _checked(h.get(f"{base}{snap['id']}"))
        if snap.get("status") != "completed":
            raise SnapshotUnavailable(f"the export ended {snap.get('status')!r}")
        md5 = _download(h, f"{base}{snap['id']}/download", fh)
        if snap.get("md5") and md5 != snap["md5"]:
            raise SnapshotUnavailable("the downloaded snapshot does not match its MD5")
        fh.seek(0)
        yield from iter_json_array(fh)


def _download(h, url: str, fh: IO[bytes]) -> str:
    """Stream ``url`` into ``fh``; its MD5 (the snapshot's own checksum)."""
    digest = hashlib.md5(usedforsecurity=False)
    t0 = time.perf_counter()
    try:
        with h.stream("GET", url, params={"exportType": "JSON"}) as r:
            if r.status_code >= 400:
                r.read()
                _checked(r)
            for chunk in r.iter_bytes(CHUNK):
                digest.update(chunk)
                fh.write(chunk)
    finally:
        h.request_s += time.perf_counter() - t0
    return digest.hexdigest()


def iter_json_array(fh: IO[bytes], chunk: int = CHUNK) -> Iterator[Any]:
    """The items of a JSON array read from a binary file, one at a time: memory holds one item
    and a read buffer, not the array. A file that is not one whole array raises ValueError."""
    dec = json.JSONDecoder()
    reader = _Text(fh, chunk)
    if reader.next_char() != "[":
        raise ValueError("the snapshot is not a JSON array")
    reader.pos += 1
    if reader.next_char() == "]":
        reader.pos += 1
        reader.expect_end()
        return
    while True:
        reader.next_char()  # raw_decode does not skip whitespace
        while True:
            try:
                item, end = dec.raw_decode(reader.buf, reader.pos)
                break
            except json.JSONDecodeError:
                if not reader.more():  # the item is cut off: the file is truncated
                    raise ValueError("the snapshot ends inside a task") from None
        reader.pos = end
        yield item
        sep = reader.next_char()
        reader.pos += 1
        if sep == "]":
            reader.expect_end()
            return
        if sep != ",":
            raise ValueError(f"the snapshot has {sep!r} where ',' or ']' belongs")


class _Text:
    """A growing text buffer over a binary UTF-8 file (items are parsed from ``buf[pos:]``)."""

    def __init__(self, fh: IO[bytes], chunk: int):
        self.fh, self.chunk = fh, chunk
        self.buf, self.pos = "", 0
        self.decoder = codecs.getincrementaldecoder("utf-8")()  # a character cut by a read waits

    def more(self) -> bool:
        """Read the next chunk (dropping what was parsed); False at the end of the file."""
        data = self.fh.read(self.chunk)
        if not data:
            self.decoder.decode(b"", final=True)  # a cut character at the very end raises
            return False
        self.buf = self.buf[self.pos :] + self.decoder.decode(data)
        self.pos = 0
        return True

    def next_char(self) -> str:
        """The next character that is not whitespace (moving ``pos`` to it); '' at the end."""
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] in " \t\r\n":
                self.pos += 1
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self.more():
                return ""

    def expect_end(self) -> None:
        if self.next_char() != "":
            raise ValueError("the snapshot has data after its array")
