"""What ``mcie`` prints while it runs, and where the rest goes.

* **Terminal**: our own warnings and errors only. Apache Beam's log (INFO from its runner and
  every worker, its tracebacks) stays off the terminal unless ``-v`` is given; ``-vv`` adds
  DEBUG.
* **Run log**: while a pipeline runs, everything Beam and its worker processes say (and a
  failure's full traceback) goes to a log file. A failed run moves it to
  ``OUT/logs/mcie-<UTC time>.log`` and names that path in its one-line error; a run that
  succeeds deletes it.
* **The ``apitools not found`` warning**: Beam's ``apache_beam/io/gcp/internal/clients/
  bigquery/__init__.py`` logs it on the root logger whenever ``apache_beam`` is imported
  without google-apitools (Beam's ``gcp`` extra, which we do not install: we never use
  BigQuery). A filter on the root logger drops exactly that record. Because the module calls
  ``logging.warning`` on a root logger with no handler, it also makes the ``logging`` module
  install a stderr handler in every Beam worker process (``logging.basicConfig``), which is
  how the workers' INFO lines reached the terminal: the run log captures the workers' stderr
  at the file-descriptor level, so that handler writes into the log file instead.
* **Model libraries** (transformers, diffusers, huggingface_hub) follow Beam's rule: their
  log records ("falling back to ...ImageProcessorPil", CLIP truncation, ``torch_dtype``
  deprecations), the Python warnings they raise during our calls and their progress bars
  ("Loading weights", "Loading pipeline components") stay off the terminal unless ``-v``.
  Through their own switches: the ``TRANSFORMERS_VERBOSITY`` / ``DIFFUSERS_VERBOSITY`` /
  ``HF_HUB_DISABLE_PROGRESS_BARS`` environment variables, read when a library is first
  imported (by Beam's worker processes too), then :func:`model_libraries` where models load:
  their records propagate to our handlers (a run log keeps them), their bars are off.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import shutil
import sys
import tempfile
import traceback
import warnings
from collections.abc import Iterator

from mcie.exitcodes import RunFailed
from mcie.layout import LOGS_DIR

#: the one record of Beam's we drop everywhere (see the module docstring)
APITOOLS_WARNING = "apitools not found"
#: the format of every line we log, on the terminal and in run logs
FORMAT = "%(levelname)s %(name)s: %(message)s"
#: loggers whose records stay off the terminal unless -v (they still reach the run log):
#: Beam's, and dask.distributed's (``--runner dask``: its scheduler and nannies run in the
#: driver and log a restarted worker as a warning)
QUIET_LOGGERS = ("apache_beam", "distributed")
#: the model libraries' loggers, and ``py.warnings`` for the Python warnings they raise inside
#: :func:`model_calls`: off the terminal unless -v, as Beam's
MODEL_LOGGERS = ("transformers", "diffusers", "huggingface_hub", "py.warnings")
#: the model libraries' own switches, read once when each is imported (see the module docstring)
LIBRARY_ENV = {
    "TRANSFORMERS_VERBOSITY": "error",
    "DIFFUSERS_VERBOSITY": "error",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
}


class _DropApitoolsWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.name == "root" and str(record.msg).startswith(APITOOLS_WARNING))


class _QuietBeam(logging.Filter):
    """Keeps Beam's records (its workers' too: the runner relays them) and the model
    libraries' off the terminal."""

    def filter(self, record: logging.LogRecord) -> bool:
        names = (*QUIET_LOGGERS, *MODEL_LOGGERS)
        return not any(record.name == n or record.name.startswith(n + ".") for n in names)


class _StderrHandler(logging.StreamHandler):
    """A stream handler that writes to whatever ``sys.stderr`` is at emit time (a test's
    capture, or the terminal while a run log holds file descriptor 2)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.__init__ assigns it; sys.stderr wins
        pass


_handler: _StderrHandler | None = None
_drop = _DropApitoolsWarning()
_verbosity = 0
#: the LIBRARY_ENV variables this process set (a user's own setting is left alone)
_env_set: set[str] = set()


def setup(verbose: int = 0) -> None:
    """Configure logging for one ``mcie`` command: warnings on stderr, Beam quiet unless
    ``verbose`` (1: Beam's INFO; 2: DEBUG). Call it before anything imports ``apache_beam``.
    Safe to call again (tests run many commands in one process)."""
    global _handler, _verbosity
    _verbosity = verbose
    root = logging.getLogger()
    if _drop not in root.filters:
        root.addFilter(_drop)
    if _handler is not None:
        root.removeHandler(_handler)
    _handler = _StderrHandler()
    _handler.setFormatter(logging.Formatter(FORMAT))
    _handler.setLevel(logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING)
    if not verbose:
        _handler.addFilter(_QuietBeam())
    root.addHandler(_handler)
    # INFO reaches handlers (the run log keeps Beam's INFO); the terminal handler filters
    root.setLevel(logging.DEBUG if verbose > 1 else logging.INFO)
    for name, value in LIBRARY_ENV.items():
        if verbose and name in _env_set:
            del os.environ[name]
            _env_set.discard(name)
        elif not verbose and name not in os.environ:
            os.environ[name] = value
            _env_set.add(name)
    model_libraries()  # libraries a command before this one imported (tests run many)


#: the libraries' logging modules, each with transformers' API (set_verbosity, *_progress_bar, ...)
_LIBRARY_LOGGING = ("transformers.utils.logging", "diffusers.utils.logging")


def model_libraries() -> None:
    """Give the imported ones of transformers' and diffusers' logging this command's rule (see
    the module docstring): records at WARNING and up (INFO with ``-vv``) propagate to our
    handlers instead of the libraries' own stderr handlers; progress bars only with ``-v``.
    A library not imported yet is left to the environment switches until it is."""
    for name in _LIBRARY_LOGGING:
        lib = sys.modules.get(name)
        if lib is None:
            continue
        lib.disable_default_handler()
        lib.enable_propagation()
        lib.set_verbosity(logging.INFO if _verbosity > 1 else logging.WARNING)
        if _verbosity:
            with warnings.catch_warnings():  # huggingface_hub read our switch at import: it may refuse
                warnings.simplefilter("ignore", UserWarning)
                lib.enable_progress_bar()
        else:
            lib.disable_progress_bar()  # transformers' also turns off huggingface_hub's


def _log_warning(message, category, filename, lineno, file=None, line=None) -> None:
    logging.getLogger("py.warnings").warning(
        "%s", warnings.formatwarning(message, category, filename, lineno, line).rstrip()
    )


@contextlib.contextmanager
def model_calls() -> Iterator[None]:
    """Around a call into transformers or diffusers (a ``from_pretrained``): their logging
    configured (:func:`model_libraries`), and the Python warnings raised inside (deprecations
    such as ``torch_dtype``) logged as ``py.warnings`` records, off the terminal unless
    ``-v``, instead of printed on stderr."""
    model_libraries()
    with warnings.catch_warnings():  # restores showwarning on the way out
        warnings.showwarning = _log_warning
        yield


def verbosity() -> int:
    """The ``-v`` count given to :func:`setup`."""
    return _verbosity


def log_name(now: datetime.datetime | None = None) -> str:
    """``mcie-<UTC time>.log``, e.g. ``mcie-20261202T141503Z.log``."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return f"mcie-{now:%Y%m%dT%H%M%SZ}.log"


def _fd2_is_stderr() -> bool:
    try:
        return sys.stderr.fileno() == 2
    except (AttributeError, OSError, ValueError):  # a capture object without a descriptor
        return False


@contextlib.contextmanager
def _worker_stderr_to(fh) -> Iterator[None]:
    """Point file descriptor 2 at ``fh`` (Beam's worker processes inherit it) while Python's
    own ``sys.stderr`` keeps writing to the terminal (progress, our messages)."""
    sys.stderr.flush()
    saved = os.dup(2)
    swap = _fd2_is_stderr()
    old_stderr = sys.stderr
    if swap:
        sys.stderr = open(saved, "w", closefd=False, buffering=1, errors="backslashreplace")  # noqa: SIM115
    os.dup2(fh.fileno(), 2)
    try:
        yield
    finally:
        if swap:
            sys.stderr.flush()
            sys.stderr.close()
            sys.stderr = old_stderr
        os.dup2(saved, 2)
        os.close(saved)


class RunFailedWithLog(RunFailed):
    """A pipeline failed; ``str()`` is the one line for the terminal, ``log_path`` the file
    holding the full traceback."""

    def __init__(self, line: str, log_path: str) -> None:
        super().__init__(f"{line} (full log: {log_path})")
        self.line, self.log_path = line, log_path


@contextlib.contextmanager
def run_log(out: str) -> Iterator[None]:
    """Capture a pipeline run's log (Python records at INFO and up, Beam's included, and the
    worker processes' stderr) in a temporary file. On an exception the traceback is appended,
    the file moves to ``OUT/logs/`` (a temporary folder when ``out`` is a cloud URL) and
    :class:`RunFailedWithLog` is raised with one line naming what failed and the log's path.
    With ``-v`` nothing is captured: everything is on the terminal already."""
    if _verbosity:
        yield
        return
    fd, tmp = tempfile.mkstemp(prefix="mcie-run-", suffix=".log")
    fh = os.fdopen(fd, "a", buffering=1, errors="backslashreplace")
    handler = logging.StreamHandler(fh)
    handler.setFormatter(logging.Formatter("%(asctime)s " + FORMAT))
    handler.setLevel(logging.INFO)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        with _worker_stderr_to(fh):
            yield
    except BaseException as exc:
        root.removeHandler(handler)
        fh.write("\n" + "".join(traceback.format_exception(exc)))
        fh.close()
        if not isinstance(exc, Exception):  # KeyboardInterrupt, SystemExit: not a run failure
            os.unlink(tmp)
            raise
        raise RunFailedWithLog(one_line(exc), _keep(tmp, out)) from exc
    else:
        root.removeHandler(handler)
        fh.close()
        os.unlink(tmp)


def _keep(tmp: str, out: str) -> str:
    """Move the temporary log ``tmp`` to ``OUT/logs/``; returns its final path."""
    from mcie import storage

    name = log_name()
    if storage.is_remote(out):
        final = os.path.join(tempfile.gettempdir(), "mcie-logs", name)
    else:
        final = os.path.join(out, LOGS_DIR, name)
    os.makedirs(os.path.dirname(final), exist_ok=True)
    shutil.move(tmp, final)  # a rename on one filesystem; the temp dir may be another
    return final


#: Beam appends this to an exception raised inside a transform
_BEAM_SUFFIX = " [while running '"


def one_line(exc: BaseException) -> str:
    """One line saying what failed, from an exception that may carry a multi-line remote
    traceback (Beam's multi-process runner re-raises a worker's failure as text).

    A :class:`mcie.exitcodes.UnitFailed` raised by a worker is found in that text by its
    marker; otherwise the last ``Type: message`` line is used. Beam's ``[while running
    'Step']`` suffix becomes ``in Beam step 'Step'``."""
    from mcie.exitcodes import UnitFailed

    text = str(exc).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    marker = UnitFailed.MARKER
    hits = [ln for ln in lines if marker in ln]
    if hits:
        line = hits[-1][hits[-1].index(marker) + len(marker) :].strip()
    elif len(lines) > 1:
        typed = [ln for ln in lines if ": " in ln and not ln.startswith(("File ", "Traceback"))]
        line = typed[-1] if typed else lines[-1]
    else:
        line = f"{type(exc).__name__}: {text}"
    step = None
    if _BEAM_SUFFIX in line:
        line, _, rest = line.partition(_BEAM_SUFFIX)
        step = rest.split("'")[0]
    line = line.strip()
    return f"{line} (in Beam step '{step}')" if step else line


def write_traceback(exc: BaseException, folder: str | None) -> str:
    """Write ``exc``'s traceback to ``FOLDER/logs/mcie-<time>.log`` (a temporary folder when
    ``folder`` is None or remote); returns the path."""
    from mcie import storage

    if folder is None or storage.is_remote(folder):
        base = os.path.join(tempfile.gettempdir(), "mcie-logs")
    else:
        base = os.path.join(folder, LOGS_DIR)
    os.makedirs(base, exist_ok=True)
    path = os.path.join(base, log_name())
    with open(path, "a", errors="backslashreplace") as fh:
        fh.write("".join(traceback.format_exception(exc)))
    return path


def stdout_closed() -> bool:
    """True when stdout is a pipe whose reader has gone (``| head`` finished)."""
    import select

    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(ev & select.POLLERR for _, ev in poller.poll(0))
    except (AttributeError, OSError, ValueError):
        return False
