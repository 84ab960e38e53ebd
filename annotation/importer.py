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

Everything is recomputed from the server's current state and written atomically, so importing
twice gives the same index and files.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from typing import Any

from mcie import storage
from mcie.annotation import review_index as ri
from mcie.annotation.client import Connection, require_project
from mcie.annotation.tasks import original_from_task
from mcie.annotation.verdicts import Decision, parse_annotation, resolve
from mcie.images import encode_png
from mcie.keys import check_key
from mcie.layout import REVIEW_DIR
from mcie.progress import track
from mcie.reasons import Status
from mcie.runlock import RunLock


def review_dir(out: str) -> str:
    return storage.join(out, REVIEW_DIR)


def _as_dict(x: Any) -> dict[str, Any]:
    if isinstance(x, dict):
        return x
    return x.model_dump() if hasattr(x, "model_dump") else dict(x)


def _apply(row: dict[str, Any], original: dict[str, Any], d: Decision, project: str, task_id: int,
           resolution: str) -> None:  # fmt: skip
    rv = ri.review_of(row) or {}
    prior = (rv.get("prior_status", row["status"]), rv.get("prior_reason", row["reason"]))
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
        },
    )


def _write_masks(out: str, key: str, d: Decision) -> None:
    check_key(key, "ls import")  # the key names files and a glob below
    folder = review_dir(out)
    storage.delete(storage.glob(storage.join(storage.escape(folder), f"{storage.escape(key)}.mask*.png")))
    for k, mask in d.masks.items():
        storage.atomic_write(storage.join(folder, f"{key}.mask{k}.png"), encode_png(mask))


#: tasks per request when reading annotations
PAGE_SIZE = 100


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


def read_tasks(
    ls, conn: Connection, project_id: int, page_size: int = PAGE_SIZE
) -> tuple[list[Any], list[str]]:
    """Every task of the project with its annotations, and the tasks the server could not give.

    The ids are listed first (``task_only``: no annotations to serialise), then the tasks are
    read a page at a time; a page the server fails on (a 5xx: one broken task can make Label
    Studio answer 500 for all of them) is read again task by task, and a task that still fails
    is left out, listed with the server's error in one line, and stays pending. An unreachable
    server or a refused token still ends the import (exit 3)."""
    from mcie.annotation.client import one_line

    with conn.errors("listing the project's tasks"):
        ids = sorted(t.id for t in ls.tasks.list(project=project_id, fields="task_only", page_size=1000))
    tasks: list[Any] = []
    unreadable: list[str] = []
    done = iter(track(range(len(ids)), "ls import", "tasks"))
    for start in range(0, len(ids), page_size):
        chunk = ids[start : start + page_size]
        page = start // page_size + 1
        pager, _ = _fetch(
            conn, "reading tasks and annotations",
            lambda page=page: ls.tasks.list(project=project_id, fields="all", page=page, page_size=page_size),
        )  # fmt: skip
        got = list(pager.items or []) if pager is not None else []
        if sorted(t.id for t in got) != chunk:  # the page failed (or changed under us): one by one
            got = []
            for tid in chunk:
                task, err = _fetch(conn, f"reading task {tid}", lambda tid=tid: ls.tasks.get(id=tid))
                if err is None:
                    got.append(task)
                else:
                    unreadable.append(f"task {tid}: HTTP {err.status_code}: {one_line(err.body, 120)}")
        tasks += got
        for _ in chunk:
            next(done, None)
    return tasks, unreadable


def _by_key(tasks: list[Any]) -> dict[str, list[Any]]:
    """Tasks grouped by sample key, in task-id order. Two exports at once (or a task copied by
    hand) can leave one key in several tasks: they are one sample, read as one task holding
    all their annotations, so no reviewer's verdict is dropped."""
    groups: dict[str, list[Any]] = collections.defaultdict(list)
    for t in sorted(tasks, key=lambda t: t.id):
        groups[str((t.data or {}).get("key"))].append(t)
    return groups


def import_project(
    out: str,
    project: str | None,
    conn: Connection,
    resolution: str = "majority",
    project_id: int | None = None,
) -> dict[str, Any]:
    """Import the verdicts of ``project`` (a title, or the project with id ``project_id``)
    into build output ``out``; returns a summary.

    Every task is read and resolved before anything is written: an annotation that cannot be
    read (an unknown reason, a brush region of another size) is reported under ``invalid``
    with its task id and its sample stays pending; nothing is half-written. The index is read,
    changed and written under the build's run lock, so a concurrent ``mcie ls`` command or
    build on ``out`` is refused (exit 1) instead of writing over these verdicts."""
    ri.read_index(out)  # a usage error before any request
    ls = conn.client()
    p = require_project(ls, conn, project, project_id)
    with RunLock(out, "ls import"):
        return _import_locked(out, p, ls, conn, resolution)


def _import_locked(out: str, p, ls, conn: Connection, resolution: str) -> dict[str, Any]:
    rows = ri.read_index(out)
    t0 = time.monotonic()
    project = p.title
    counts: collections.Counter[str] = collections.Counter()
    disagreements: list[str] = []
    unknown: list[str] = []
    invalid: list[str] = []
    duplicated: list[str] = []
    tasks, unreadable = read_tasks(ls, conn, p.id)
    decided: list[tuple[str, dict[str, Any], Decision, int]] = []
    for key, group in sorted(_by_key(tasks).items()):
        if key not in rows:  # rows hold only valid keys (read_index checks them)
            unknown.append(key[:80])
            continue
        if len(group) > 1:
            duplicated.append(key)
        first = group[0]
        original = original_from_task(first.data)
        preds = [_as_dict(x) for t in group for x in (t.predictions or [])]
        try:
            reviews = [
                parse_annotation(a, preds, original)
                for t in group
                for a in map(_as_dict, t.annotations or [])
                if not a.get("was_cancelled")
            ]
        except (ValueError, KeyError, TypeError) as exc:  # e.g. an unknown reason value
            ids = ",".join(str(t.id) for t in group)
            invalid.append(f"{key}: task {ids}: {type(exc).__name__}: {exc}")
            continue  # left as it was (pending); reported
        d = resolve(reviews, resolution)
        if d is None:
            counts["pending"] += 1
            continue
        counts[d.decision] += 1
        if d.decision == "disagreement":
            disagreements.append(key)
        decided.append((key, original, d, first.id))
    for key, original, d, task_id in decided:
        _apply(rows[key], original, d, project, task_id, resolution)
        _write_masks(out, key, d)
    ri.write_index(out, rows)
    elapsed = time.monotonic() - t0
    reviewed = sum(v for k, v in counts.items() if k != "pending")
    return {
        "project": project,
        "tasks": len(tasks),
        "by_decision": dict(sorted(counts.items())),
        "disagreements": sorted(disagreements),
        "unknown_keys": sorted(unknown),
        "invalid": sorted(invalid),
        "duplicate_tasks": sorted(duplicated),
        "unreadable_tasks": unreadable,
        "resolution": resolution,
        "elapsed_s": round(elapsed, 3),
        "tasks_per_s": round(reviewed / elapsed, 1) if elapsed > 0 else None,
    }
