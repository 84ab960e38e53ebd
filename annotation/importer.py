"""``mcie ls import``: pull reviewers' annotations back into a build's index.

For every task of the project: each reviewer's latest annotation is read
(:func:`mcie.annotation.verdicts.parse_annotation`), the reviewers are resolved (majority or
strict), and the sample's index row is updated — accepted (``accept``/``fixed``) or rejected
with a reason (the reviewer's, or ``annotator_disagreement``); the instruction and
sub-instruction columns take the corrected wording; the full human verdict goes to
``verdict_json`` under ``review``. Corrected masks are written as
``{out}/review/{key}.mask{k}.png`` (0/255), read by ``mcie ls shard``. Tasks without
annotations stay ``pending``; so do tasks whose annotations cannot be read (a brush region of
another image size, say), which the summary lists under ``invalid``.

Every part of the review is read (:mod:`mcie.annotation.parts`), a page of tasks at a time,
keeping one page in memory; the task ids come from the index (what export recorded) unless the
part holds other tasks too, when they are listed. Or (``read="snapshot"``) through one export
snapshot per part, its annotated tasks read one at a time (:mod:`mcie.annotation.snapshot`).

Everything is recomputed from the server's current state and written atomically, so importing
twice gives the same index and files.
"""

from __future__ import annotations

import collections
import itertools
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

from mcie import storage
from mcie.annotation import review_index as ri
from mcie.annotation.client import Connection, http, iter_tasks, json_of, require_project
from mcie.annotation.parts import find_parts
from mcie.annotation.snapshot import SnapshotUnavailable, read_annotated
from mcie.annotation.tasks import original_from_task
from mcie.annotation.verdicts import Decision, Review, parse_annotation, predicted_digests, resolve
from mcie.exitcodes import UsageError
from mcie.images import encode_png
from mcie.keys import check_key
from mcie.layout import REVIEW_DIR
from mcie.progress import Progress
from mcie.reasons import Status
from mcie.runlock import RunLock


def review_dir(out: str) -> str:
    return storage.join(out, REVIEW_DIR)


def _apply(row: dict[str, Any], original: dict[str, Any], d: Decision, project: str, task_id: int,
           resolution: str) -> None:  # fmt: skip
    rv = ri.review_of(row) or {}
    prior = (rv.get("prior_status", row["status"]), rv.get("prior_reason", row["reason"]))
    # the digests export recorded of this task's pre-annotations: a later import needs them too
    kept = {"predicted": rv["predicted"]} if rv.get("task_id") == task_id and "predicted" in rv else {}
    subs = [s["instruction"] for s in original["sub_edits"]]
    row["status"] = Status.ACCEPTED.value if d.accepted else Status.REJECTED.value
    row["reason"] = d.reason
    row["instruction"] = d.instruction or original["instruction"]
    row["sub_instructions"] = [d.sub_instructions.get(k, s) for k, s in enumerate(subs)]
    ri.set_review(
        row,
        {
            "state": "reviewed",
            "project": project,
            "task_id": task_id,
            "prior_status": prior[0],
            "prior_reason": prior[1],
            "decision": d.decision,
            "reason": d.reason,
            "resolution": resolution,
            "reviewers": [r.summary() for r in d.reviews],
            "original_instruction": original["instruction"],
            "original_sub_instructions": subs,
            "corrected": {
                "instruction": d.instruction,
                "sub_instructions": {str(k): t for k, t in sorted(d.sub_instructions.items())},
                "masks": sorted(d.masks),
            },
            **kept,
        },
    )


def _write_masks(out: str, masks: dict[str, dict[int, bytes]]) -> None:
    """Write each decided sample's corrected masks, removing the ones an earlier import wrote
    for it (the folder is listed once, not once per sample)."""
    folder = review_dir(out)
    earlier: dict[str, list[str]] = collections.defaultdict(list)
    for path in storage.glob(storage.join(storage.escape(folder), "*.mask*.png")):
        earlier[path.rsplit("/", 1)[-1].split(".", 1)[0]].append(path)
    for key, pngs in masks.items():
        check_key(key, "ls import")  # the key names files
        storage.delete(earlier.get(key, []))
        for k, png in pngs.items():  # encoded when the sample was resolved
            storage.atomic_write(storage.join(folder, f"{key}.mask{k}.png"), png)


#: tasks per request when reading annotations: their ids go in the URL (a JSON list in
#: ``query``, about 10 bytes each encoded), so a page stays under the 8 KB request line a proxy
#: in front of Label Studio (nginx's default buffer) accepts
PAGE_SIZE = 250


def _fetch(conn: Connection, doing: str, fn: Callable[[], Any]) -> tuple[Any, Any]:
    """``(fn(), None)``, or ``(None, error)`` when the server failed with a 5xx; any other
    failure (unreachable, a refused token) raises as :meth:`Connection.errors` maps it."""
    from label_studio_sdk.core.api_error import ApiError

    try:
        return fn(), None
    except ApiError as exc:
        if (exc.status_code or 0) >= 500:
            return None, exc
        with conn.errors(doing):
            raise
    except Exception:
        with conn.errors(doing):
            raise


def part_task_ids(rows: dict[str, dict[str, Any]], h, conn: Connection, part) -> dict[int, str]:
    """``{task id: sample key}`` of every task of a part. The index holds the task id export
    recorded for each sample it sent; when the part holds exactly as many tasks, those are its
    tasks and no listing is needed. Otherwise (tasks added by hand, two exports at once) every
    task is listed (``task_only``: no annotations to serialise)."""
    known: dict[int, str] = {}
    for k, r in rows.items():
        rv = ri.review_of(r)
        if rv and rv.get("project") == part.title and rv.get("task_id") is not None:
            known[int(rv["task_id"])] = k
    with conn.errors(f"reading project {part.title!r}"):
        count = json_of(h.get(f"/api/projects/{part.id}/"))["task_number"]
    if count == len(known):
        return known
    listed: dict[int, str] = {}
    with conn.errors("listing the project's tasks"):
        for t in iter_tasks(h, part.id):
            listed[t["id"]] = str((t.get("data") or {}).get("key"))
    return listed


def read_tasks(
    h, conn: Connection, project_id: int, ids: list[int], unreadable: list[str], page_size: int = PAGE_SIZE
) -> Iterator[dict[str, Any]]:
    """The tasks ``ids`` with their annotations and predictions, as plain dicts (``h``:
    :func:`http`), a page of ids at a time, so one page is held in memory. Tasks the server
    cannot give are left out and appended to ``unreadable``.

    A page is the data manager's task list restricted to those ids (``selectedItems``), so no
    page depends on the list's order. (Label Studio's export API serialises a task for less,
    but it also saves a copy of every response in the server's export folder: an import would
    litter the server with copies of all annotations.) A page the server fails on (a 5xx: one
    broken task can make Label Studio answer 500 for all of them) is read again task by task,
    and a task that still fails is left out, listed with the server's error in one line, and
    stays pending. An unreachable server or a refused token still ends the import (exit 3)."""
    from mcie.annotation.client import one_line

    for start in range(0, len(ids), page_size):
        chunk = ids[start : start + page_size]
        query = json.dumps({"selectedItems": {"all": False, "included": chunk}}, separators=(",", ":"))
        params = {"project": project_id, "fields": "all", "resolve_uri": "false", "page": 1,
                  "page_size": len(chunk), "query": query}  # fmt: skip
        got, _ = _fetch(
            conn,
            "reading tasks and annotations",
            lambda params=params: json_of(h.get("/api/tasks/", params=params)),
        )
        tasks = got["tasks"] if isinstance(got, dict) else None
        if tasks is None or sorted(t["id"] for t in tasks) != chunk:  # the page failed: one by one
            tasks = []
            for tid in chunk:
                task, err = _fetch(
                    conn, f"reading task {tid}", lambda tid=tid: json_of(h.get(f"/api/tasks/{tid}/"))
                )
                if err is None:
                    tasks.append(task)
                else:
                    unreadable.append(f"task {tid}: HTTP {err.status_code}: {one_line(err.body, 120)}")
        yield from sorted(tasks, key=lambda t: t["id"])


class _KeyReviews:
    """The reviews of one sample gathered over its tasks (usually one; two exports at once, or
    a task copied by hand, can leave one key in several tasks: they are one sample, read as one
    task holding all their annotations, so no reviewer's verdict is dropped)."""

    def __init__(self, key: str, task_ids: list[int]):
        self.key, self.waiting = key, len(task_ids)
        self.task_ids = task_ids  # every task of the sample in the part, read or not (ascending)
        self.original: dict[str, Any] | None = None
        self.reviews: list[Review] = []
        self.error: str | None = None

    def add(self, task: dict[str, Any], predicted: dict[str, str] | None = None) -> None:
        """One task of the sample; ``predicted``: the digests of its pre-annotations export
        recorded, used when the task came with its predictions' ids only."""
        self.waiting -= 1
        anns = [a for a in task.get("annotations") or [] if not a.get("was_cancelled")]
        if not anns or self.error is not None:
            return
        try:
            self.original = self.original or original_from_task(task["data"])
            preds = task.get("predictions") or []
            if all(isinstance(p, dict) for p in preds):
                predicted = predicted_digests(preds)  # the predictions themselves, once per task
            elif predicted is None:
                raise ValueError("the task came without its predictions and export recorded none")
            self.reviews += [parse_annotation(a, preds, self.original, predicted) for a in anns]
        except (ValueError, KeyError, TypeError) as exc:  # e.g. an unknown reason value
            self.error = f"{type(exc).__name__}: {exc}"


#: how ``ls import`` reads a part: ``list`` (the data manager's task list, a page of ids at a
#: time: nothing is written on the server) or ``snapshot`` (one Label Studio export snapshot of
#: the annotated tasks, about twice as fast, kept on the project's Export page; the task list
#: when the server cannot make one): :mod:`mcie.annotation.snapshot`
READ_MODES = ("list", "snapshot")


def recorded_digests(rows: dict[str, dict[str, Any]], key_of: dict[int, str], title: str) -> dict[int, dict]:
    """``{task id: digests of its pre-annotations}`` for the part's tasks export sent and
    recorded (:func:`~mcie.annotation.verdicts.predicted_digests`)."""
    out: dict[int, dict] = {}
    for tid, key in key_of.items():
        rv = (ri.review_of(rows[key]) if key in rows else None) or {}
        if (rv.get("project"), rv.get("task_id")) == (title, tid) and isinstance(rv.get("predicted"), dict):
            out[tid] = rv["predicted"]
    return out


def part_tasks(h, conn: Connection, part, key_of: dict[int, str], digests: dict[int, dict], read: str,
               unreadable: list[str], bar: Progress) -> tuple[Iterator[dict[str, Any]], str]:  # fmt: skip
    """The part's tasks to resolve, and how they are read (``snapshot`` or ``list``). A snapshot
    holds the annotated tasks only, with the predictions' ids alone when every task's digests
    are recorded; when the server cannot make one, the task list is read instead. ``bar``
    says what the import waits on while the server writes the snapshot (minutes at 90k)."""
    if read == "snapshot":
        gen = read_annotated(h, part.id, with_predictions=len(digests) < len(key_of))
        t0 = time.monotonic()
        bar.note("Label Studio is writing an export snapshot")
        try:
            with conn.errors(f"reading a snapshot of project {part.title!r}"):
                first = next(gen, None)  # the snapshot is made and downloaded here
        except SnapshotUnavailable as e:
            bar.note(f"no snapshot ({e}): reading the task list")
        else:
            bar.note(f"snapshot made and downloaded in {time.monotonic() - t0:.1f} s")
            return itertools.chain([first] if first is not None else [], gen), "snapshot"
    return read_tasks(h, conn, part.id, sorted(key_of), unreadable), "list"


def import_project(
    out: str,
    project: str | None,
    conn: Connection,
    resolution: str = "majority",
    project_id: int | None = None,
    read: str = "list",
) -> dict[str, Any]:
    """Import the verdicts of ``project`` (a title, or the project with id ``project_id``)
    into build output ``out``; returns a summary.

    Every task is read and resolved before anything is written: an annotation that cannot be
    read (an unknown reason, a brush region of another size) is reported under ``invalid``
    with its task id and its sample stays pending; nothing is half-written. The index is read,
    changed and written under the build's run lock, so a concurrent ``mcie ls`` command or
    build on ``out`` is refused (exit 1) instead of writing over these verdicts."""
    if read not in READ_MODES:
        raise UsageError(f"read must be one of {', '.join(READ_MODES)}, not {read!r}")
    ri.read_index(out)  # a usage error before any request
    ls = conn.client()
    parts = find_parts(ls, conn, require_project(ls, conn, project, project_id))
    with RunLock(out, "ls import"), http(conn) as h:
        return _import_locked(out, parts, h, conn, resolution, read)


def _import_locked(out: str, parts: list, h, conn: Connection, resolution: str, read: str) -> dict[str, Any]:
    rows = ri.read_index(out)
    t0 = time.monotonic()
    counts: collections.Counter[str] = collections.Counter()
    disagreements: list[str] = []
    unknown: list[str] = []
    invalid: list[str] = []
    duplicated: list[str] = []
    unreadable: list[str] = []
    # corrected masks as PNG per decided key, written once every task is read; the rows take
    # their verdicts as each sample is resolved (the index is written only at the end)
    masks: dict[str, dict[int, bytes]] = {}
    n_tasks = 0
    how: collections.Counter[str] = collections.Counter()
    for p in parts:
        key_of = part_task_ids(rows, h, conn, p)
        digests = recorded_digests(rows, key_of, p.title)
        # each key's tasks in this part: a key is resolved as its last task is read
        tasks_of: dict[str, list[int]] = collections.defaultdict(list)
        for tid in sorted(key_of):
            tasks_of[key_of[tid]].append(tid)
        pending: dict[str, _KeyReviews] = {}
        bar = Progress(len(key_of), f"ls import {p.title}", "tasks")
        tasks, mode = part_tasks(h, conn, p, key_of, digests, read, unreadable, bar)
        how[mode] += 1
        seen: set[int] = set()
        for task in tasks:
            if task["id"] not in key_of:  # a snapshot's task added after the part was listed
                continue
            seen.add(task["id"])
            n_tasks += 1
            bar.update()
            key = key_of[task["id"]]
            if key not in rows:  # rows hold only valid keys (read_index checks them)
                unknown.append(key[:80])
                continue
            g = pending.setdefault(key, _KeyReviews(key, tasks_of[key]))
            g.add(task, digests.get(task["id"]))
            if g.waiting > 0:
                continue
            del pending[key]
            _decide(g, rows, resolution, p.title, counts, masks, disagreements, invalid, duplicated)
        for g in pending.values():  # a task unreadable, or not in the snapshot (no annotation)
            _decide(g, rows, resolution, p.title, counts, masks, disagreements, invalid, duplicated)
        if mode == "snapshot":  # tasks without an annotation are not in it: pending, as listed
            waiting = {k for k in key_of.values() if k in rows} - {key_of[t] for t in seen}
            counts["pending"] += len(waiting)
            unknown += [k[:80] for t, k in key_of.items() if t not in seen and k not in rows]
            n_tasks += len(key_of) - len(seen)
            bar.update(len(key_of) - len(seen))
        bar.close()
    _write_masks(out, masks)
    ri.write_index(out, rows)
    elapsed = time.monotonic() - t0
    reviewed = sum(v for k, v in counts.items() if k != "pending")
    return {
        "project": parts[0].title,
        "projects": [p.title for p in parts],
        "tasks": n_tasks,
        "read": dict(sorted(how.items())),
        "by_decision": dict(sorted(counts.items())),
        "disagreements": sorted(disagreements),
        "unknown_keys": sorted(unknown),
        "invalid": sorted(invalid),
        "duplicate_tasks": sorted(duplicated),
        "unreadable_tasks": unreadable,
        "resolution": resolution,
        "elapsed_s": round(elapsed, 3),
        "request_s": round(h.request_s, 3),
        "tasks_per_s": round(reviewed / elapsed, 1) if elapsed > 0 else None,
    }


def _decide(g: _KeyReviews, rows, resolution: str, project: str, counts, masks, disagreements, invalid,
            duplicated) -> None:  # fmt: skip
    """Resolve one sample's reviews into its index row now, keeping only its corrected masks
    (as PNG: a few KB each) for the end, so the import's memory does not hold every review."""
    if len(g.task_ids) > 1:
        duplicated.append(g.key)
    if g.error is not None:
        invalid.append(f"{g.key}: task {','.join(map(str, g.task_ids))}: {g.error}")
        return  # left as it was (pending); reported
    d = resolve(g.reviews, resolution)
    if d is None:
        counts["pending"] += 1
        return
    counts[d.decision] += 1
    if d.decision == "disagreement":
        disagreements.append(g.key)
    _apply(rows[g.key], g.original, d, project, g.task_ids[0], resolution)
    masks[g.key] = {k: encode_png(m) for k, m in d.masks.items()}
