"""Progress bars for the long loops of single-process commands: ``train`` steps, ``edit``
sampling steps, ``bench run`` sets, ``ls export/import`` tasks.

A bar (tqdm, on stderr) shows only when stderr is a terminal and the command was not given
``--no-progress``; it ends with one summary line (``bench run: 400 sets in 12.3 s, 32.5
sets/s``) in its place. Piped or logged output gets neither: stdout stays what the command
prints; commands print their plain progress lines there instead (:func:`lines`), unless
``--no-progress``. (Beam pipelines report progress from their units' done-markers instead:
:mod:`mcie.pipeline.progress`.)
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import IO, TypeVar

T = TypeVar("T")

_enabled = True


def configure(enabled: bool) -> None:
    """Switch bars on or off for this process (the CLI's ``--no-progress``)."""
    global _enabled
    _enabled = enabled


def shown(stream: IO[str] | None = None) -> bool:
    """Whether a bar would show on ``stream`` (default stderr) now."""
    stream = stream or sys.stderr
    try:
        return _enabled and stream.isatty()
    except (AttributeError, ValueError):
        return False


def lines() -> bool:
    """Whether a command should print its plain progress lines instead: progress is on but
    stderr is no terminal (a log file, a pipe)."""
    return _enabled and not shown()


class Progress:
    """A bar over ``total`` steps of ``unit``; :meth:`update` as work is done, :meth:`close`
    (or leave the ``with`` block) to replace it with the summary line. A no-op when not
    :func:`shown`."""

    def __init__(self, total: int | None, desc: str, unit: str = "it", stream: IO[str] | None = None) -> None:
        self.desc, self.unit, self.total = desc, unit, total
        self.stream = stream or sys.stderr
        self.done = 0
        self.start = time.monotonic()
        self.bar = None
        if shown(self.stream):
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit=f" {unit}", file=self.stream, leave=False,
                            dynamic_ncols=True)  # fmt: skip

    def update(self, n: int = 1, **postfix: object) -> None:
        self.done += n
        if self.bar is not None:
            if postfix:
                self.bar.set_postfix(postfix, refresh=False)
            self.bar.update(n)

    def summary(self) -> str:
        """``desc: N unit in T s, R unit/s``."""
        el = time.monotonic() - self.start
        rate = f", {self.done / el:.3g} {self.unit}/s" if el > 0 and self.done else ""
        return f"{self.desc}: {self.done} {self.unit} in {el:.1f} s{rate}"

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
            print(self.summary(), file=self.stream, flush=True)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def track(items: Iterable[T], desc: str, unit: str = "it", total: int | None = None) -> Iterator[T]:
    """``items`` with a bar (see :class:`Progress`); the summary line follows the last item."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with Progress(total, desc, unit) as p:
        for item in items:
            yield item
            p.update()
