"""Progress for the long loops of single-process commands: ``train`` steps, ``edit`` sampling
steps, ``bench build`` / ``bench run`` sets, ``audit`` shards, ``ls export/import`` tasks.

* **On a terminal** (stderr is a tty): a bar (tqdm, on stderr) with its rate and ETA; it ends
  with one summary line (``bench run: 400 sets in 12.3 s, 32.5 sets/s``) in its place.
* **Into a pipe or a log**: plain lines on stderr, never ``\\r`` redraws: ``bench run: 3/400
  sets, 0.0083 sets/s, 6m03s elapsed, ETA 13h20m``. A loop whose items are slow asks for an
  estimate after its first items (``estimate_after``: that line adds ``about 13h26m in all``);
  after that a line every ``interval`` seconds (default 30) and one at the last item.
* ``--no-progress`` (:func:`configure`): neither. stdout stays what the command prints.

(Beam pipelines report progress from their units' done-markers instead:
:mod:`mcie.pipeline.progress`.)
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import IO, TypeVar

T = TypeVar("T")

_enabled = True
#: seconds between two plain lines (a log gets a line this often, not one per item)
INTERVAL = 30.0


def configure(enabled: bool) -> None:
    """Switch progress (bars and plain lines) on or off for this process (``--no-progress``)."""
    global _enabled
    _enabled = enabled


def shown(stream: IO[str] | None = None) -> bool:
    """Whether a bar would show on ``stream`` (default stderr) now."""
    stream = stream or sys.stderr
    try:
        return _enabled and stream.isatty()
    except (AttributeError, ValueError):
        return False


def lines(stream: IO[str] | None = None) -> bool:
    """Whether plain progress lines go to ``stream`` (default stderr) instead of a bar:
    progress is on but the stream is no terminal (a log file, a pipe)."""
    return _enabled and not shown(stream)


def duration(seconds: float) -> str:
    """``4.2s``, ``6m03s``, ``13h20m``; ``?`` for an unknown (NaN or infinite) time."""
    if seconds != seconds or seconds == float("inf"):
        return "?"
    if seconds < 60:
        return f"{seconds:.1f}s"
    m, s = divmod(int(seconds), 60)
    return f"{m}m{s:02d}s" if m < 60 else f"{m // 60}h{m % 60:02d}m"


class Progress:
    """Progress over ``total`` steps of ``unit``: :meth:`update` as work is done, :meth:`close`
    (or leave the ``with`` block) to end it. A bar on a terminal, plain lines elsewhere (see
    the module docstring); nothing with ``--no-progress``.

    ``estimate_after``: print a plain line with the estimated total time once this many steps
    are done (None: no early line; slow loops such as ``bench run`` set it). ``interval``:
    seconds between plain lines."""

    def __init__(
        self,
        total: int | None,
        desc: str,
        unit: str = "it",
        stream: IO[str] | None = None,
        estimate_after: int | None = None,
        interval: float | None = None,
    ) -> None:
        self.desc, self.unit, self.total = desc, unit, total
        self.stream = stream or sys.stderr
        self.done = 0
        self.start = time.monotonic()
        self.estimate_after = estimate_after
        self.interval = INTERVAL if interval is None else interval
        self.plain = lines(self.stream)
        self._last_line = self.start
        self._lines = 0
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
        elif self.plain:
            now = time.monotonic()
            first = self.estimate_after is not None and self.done - n < self.estimate_after <= self.done
            last = self.total is not None and self.done >= self.total and self._lines
            if first or last or now - self._last_line >= self.interval:
                self._say(self.line(estimate=first), now)

    def note(self, text: str) -> None:
        """Say what the loop waits on before its next item (``ls import``: the server writing
        a snapshot): beside the bar on a terminal, a plain line in a log, nothing when off."""
        if self.bar is not None:
            self.bar.set_postfix_str(text)
        elif self.plain:
            self._say(f"{self.desc}: {text}", time.monotonic())

    def line(self, estimate: bool = False) -> str:
        """``desc: 3/400 sets, 0.0083 sets/s, 6m03s elapsed, ETA 13h20m``; with ``estimate``
        the estimated time in all is added."""
        el = time.monotonic() - self.start
        rate = self.done / el if el > 0 else 0.0
        of = f"/{self.total}" if self.total is not None else ""
        text = f"{self.desc}: {self.done}{of} {self.unit}, {rate:.3g} {self.unit}/s, {duration(el)} elapsed"
        if self.total is not None:
            left = (self.total - self.done) / rate if rate > 0 else float("nan")
            text += f", ETA {duration(left)}"
            if estimate:
                text += f" (about {duration(el + left)} in all)"
        return text

    def _say(self, text: str, now: float) -> None:
        print(text, file=self.stream, flush=True)
        self._last_line, self._lines = now, self._lines + 1

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


def track(
    items: Iterable[T],
    desc: str,
    unit: str = "it",
    total: int | None = None,
    estimate_after: int | None = None,
) -> Iterator[T]:
    """``items`` with progress (see :class:`Progress`); the summary line follows the last item."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with Progress(total, desc, unit, estimate_after=estimate_after) as p:
        for item in items:
            yield item
            p.update()
