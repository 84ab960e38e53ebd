"""Progress while a pipeline runs: the driver polls the units' done-markers.

Workers may be other processes (or machines), so progress is read from what they leave on
disk, not from shared memory: each finished unit's stats file adds its candidates.
"""

from __future__ import annotations

import sys
import threading
import time

from mcie import storage
from mcie.progress import shown


class ProgressReporter:
    """Prints units done, samples/s and an ETA every ``interval`` seconds to stderr."""

    def __init__(
        self,
        stats_dir: str,
        total_units: int,
        total_samples: int,
        label: str,
        interval: float = 5.0,
        already: set[int] | None = None,
    ) -> None:
        self.stats_dir = stats_dir
        self.total_units = total_units
        self.total_samples = total_samples
        self.label = label
        self.interval = interval
        self.already = already or set()
        self._seen: dict[str, int] = {}
        self._stop = threading.Event()
        self._redrawn = False
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self.start_time = time.monotonic()

    def __enter__(self) -> ProgressReporter:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        if self._redrawn:  # the final counts, and end the line redrawn in place
            print(f"\r{self.line()}\x1b[K", file=sys.stderr, flush=True)

    def done(self) -> tuple[int, int]:
        """(units finished in this run, their candidates)."""
        units = samples = 0
        try:
            paths = storage.list_folder(self.stats_dir, "mcie-*.json")
        except Exception:  # a listing that fails now is retried at the next tick
            return 0, 0
        for path in paths:
            name = storage.basename(path)
            if int(name[5:11]) in self.already:
                continue
            if name not in self._seen:  # a marker never changes once written: read it once
                try:
                    self._seen[name] = storage.read_json(path)["candidates"]
                except (OSError, ValueError, KeyError):
                    continue
            samples += self._seen[name]
            units += 1
        return units, samples

    def line(self) -> str:
        units, samples = self.done()
        el = time.monotonic() - self.start_time
        rate = samples / el if el > 0 else 0.0
        left = self.total_samples - samples
        eta = f"{left / rate:.0f}s" if rate > 0 else "?"
        return (
            f"[{self.label}] units {units}/{self.total_units}  samples {samples}/{self.total_samples}"
            f"  {rate:.1f} samples/s  elapsed {el:.0f}s  ETA {eta}"
        )

    def _loop(self) -> None:
        # on a terminal one line is redrawn in place; in a log, one line per interval
        redraw = shown()
        while not self._stop.wait(self.interval):
            if redraw:
                print(f"\r{self.line()}\x1b[K", end="", file=sys.stderr, flush=True)
                self._redrawn = True
            else:
                print(self.line(), file=sys.stderr, flush=True)
