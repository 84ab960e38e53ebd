"""The torch thread count of the model commands (``mcie train``, ``mcie edit``, ``mcie bench run``).

torch's default is one thread per core. The tiny presets gain nothing from more than one, and
on a small or busy machine the threads oversubscribe the cores: ``mcie train --preset tiny``
ran at 0.10 step/s with the default against 0.88 with one thread on 2 shared cores, and a
``mcie bench run`` of a 32 px checkpoint took about 13 s of CPU per set against ~1 s.
"""

from __future__ import annotations

import os

THREADS_HELP = "torch CPU threads (default: 1 on machines with at most 4 cores, else half the cores up to 8)"


def default_threads(cores: int | None = None) -> int:
    """1 on a machine with at most 4 cores, else half the cores, at most 8."""
    cores = cores or os.cpu_count() or 1
    return 1 if cores <= 4 else min(8, cores // 2)


def set_torch_threads(threads: int | None = None) -> int:
    """Set torch's intra-op threads to ``threads`` (default :func:`default_threads`); returns it."""
    import torch

    n = threads or default_threads()
    torch.set_num_threads(n)
    return n
