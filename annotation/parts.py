"""A review too large for one Label Studio project, split into parts.

Label Studio advises about 100k tasks per project (:mod:`mcie.annotation.limits`) and a set may
be larger, so ``mcie ls export`` fills projects of at most ``max_tasks`` tasks in order: part 1
is the project titled ``TITLE``, part n > 1 the project titled ``TITLE-n`` (:func:`part_title`).
A part beyond the first says so in its description (:func:`part_description`), so a project a
user made with such a title for something else is never read as a part: ``ls import`` stops
before it, and ``ls export`` refuses to write into it. Every part has its own image folder and
local-files storage.
"""

from __future__ import annotations

from mcie.annotation.client import Connection, find_project
from mcie.annotation.limits import MAX_TITLE
from mcie.exitcodes import UsageError

_PART_MARK = "mcie review part {n} of {title!r}"


def part_title(title: str, n: int) -> str:
    """The title of part ``n`` (1-based) of the review titled ``title``."""
    return title if n == 1 else f"{title}-{n}"


def part_description(title: str, n: int) -> str:
    """The description of a new part (the first part is the review's own project)."""
    text = "mcie human validation (created by `mcie ls export`)"
    return text if n == 1 else f"{text}; {_PART_MARK.format(n=n, title=title)}"


def is_part(project, title: str, n: int) -> bool:
    """Whether ``project`` is part ``n`` of the review titled ``title``."""
    return n == 1 or _PART_MARK.format(n=n, title=title) in (getattr(project, "description", None) or "")


def find_parts(ls, conn: Connection, first) -> list:
    """The parts of the review whose first project is ``first``, in order: ``first``, then each
    ``TITLE-n`` made as part n, up to the first title that is missing or is not a part."""
    parts = [first]
    while len(part_title(first.title, len(parts) + 1)) <= MAX_TITLE:
        n = len(parts) + 1
        p = find_project(ls, conn, part_title(first.title, n))
        if p is None or not is_part(p, first.title, n):
            break
        parts.append(p)
    return parts


def check_new_part(ls, conn: Connection, title: str, n: int) -> str:
    """The title of part ``n``, about to be created: UsageError when it is too long for Label
    Studio or a project not made as that part already holds it."""
    name = part_title(title, n)
    if len(name) > MAX_TITLE:
        raise UsageError(
            f"the review needs a part {n} titled {name!r}, longer than Label Studio's {MAX_TITLE} "
            "characters: choose a shorter --project or a larger --max-tasks-per-project"
        )
    if find_project(ls, conn, name) is not None:
        raise UsageError(
            f"the review {title!r} needs a part {n} titled {name!r}, but a project of that title "
            "exists and was not made as a part of it: rename that project or choose another --project"
        )
    return name
