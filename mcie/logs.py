"""What ``mcie`` prints while it runs, and where the rest goes.

* **Terminal**: our own warnings and errors only. Apache Beam's log (INFO from its runner and
  every worker, its tracebacks) stays off the terminal unless ``-v`` is given; ``-vv`` adds
  DEBUG.
* **Run log**: while a pipeline runs, everything Beam and its worker processes say (and a
  failure's full traceback) goes to a log file. A failed run moves it to
  ``OUT/logs/mcie-<UTC time>.log`` and names that path in its one-line error; a run that
  succeeds deletes it.
* **Log files are private and never follow a planted name**: a log is created new
  (``O_CREAT | O_EXCL | O_NOFOLLOW``, mode 0600); one that has no build folder to go to goes
  into a fresh private folder (:func:`tempfile.mkdtemp`, 0700) rather than a fixed name in the
  shared temp folder, where another local user could plant a symlink into a file of yours.
* **A log that cannot be written** (a full disk) is said in the one line, after the cause, and
  never replaces it. A run stopped by SIGTERM removes its temporary run log before it dies.
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
import errno
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
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


class _LogFileHandler(logging.StreamHandler):
    """The run log's handler: a record it cannot write (a full disk) is dropped quietly and
    remembered, instead of logging's ``--- Logging error ---`` traceback on the terminal."""

    def __init__(self, stream) -> None:
        super().__init__(stream)
        self.failed: BaseException | None = None

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        self.failed = self.failed or sys.exc_info()[1]


@contextlib.contextmanager
def _removed_on_sigterm(path: str) -> Iterator[None]:
    """While the block runs, SIGTERM first removes ``path`` (the temporary run log), then
    takes its usual course (the handler before ours, or death by the signal). Raising in the
    handler instead would not unwind: Beam catches it in the step it interrupts."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _on_sigterm(signum, frame):
        _unlink(path)
        signal.signal(signal.SIGTERM, previous)
        if callable(previous):
            previous(signum, frame)
        else:
            os.kill(os.getpid(), signal.SIGTERM)

    # None: a handler installed outside Python, which cannot be put back; the default then
    previous = signal.signal(signal.SIGTERM, _on_sigterm) or signal.SIG_DFL
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def run_log(out: str) -> Iterator[None]:
    """Capture a pipeline run's log (Python records at INFO and up, Beam's included, and the
    worker processes' stderr) in a temporary file. On an exception the traceback is appended,
    the file moves to ``OUT/logs/`` (a private temporary folder when ``out`` is a cloud URL)
    and :class:`RunFailedWithLog` is raised with one line naming what failed and the log's
    path; when the log cannot be written or kept (a full disk), :class:`RunFailed` names the
    cause first and then what became of the log. With ``-v`` nothing is captured: everything
    is on the terminal already."""
    if _verbosity:
        yield
        return
    fd, tmp = tempfile.mkstemp(prefix="mcie-run-", suffix=".log")  # O_EXCL, 0600, random name
    fh = os.fdopen(fd, "a", buffering=1, errors="backslashreplace")
    handler = _LogFileHandler(fh)
    handler.setFormatter(logging.Formatter("%(asctime)s " + FORMAT))
    handler.setLevel(logging.INFO)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        with _removed_on_sigterm(tmp), _worker_stderr_to(fh):
            yield
    except BaseException as exc:
        root.removeHandler(handler)
        written = _append(fh, "\n" + "".join(traceback.format_exception(exc)))
        if not isinstance(exc, Exception):  # KeyboardInterrupt, SystemExit: not a run failure
            _unlink(tmp)
            raise
        problem = written or handler.failed
        if problem is not None:
            raise RunFailed(f"{one_line(exc)} ({_unwritten(tmp, problem)})") from exc
        try:
            kept = _keep(tmp, out)
        except OSError as move:
            raise RunFailed(f"{one_line(exc)} (the run log could not be moved to {out}: {_why(move)}; "
                            f"it is at {tmp})") from exc  # fmt: skip
        raise RunFailedWithLog(one_line(exc), kept) from exc
    else:
        root.removeHandler(handler)
        _append(fh, "")
        _unlink(tmp)


def _append(fh, text: str) -> OSError | None:
    """Write ``text`` to ``fh`` and close it; the OSError that stopped it, if any."""
    try:
        try:
            fh.write(text)
        finally:
            fh.close()
    except OSError as exc:
        return exc
    return None


def _unlink(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def _unwritten(tmp: str, problem: BaseException) -> str:
    """What became of a run log that could not be written in full: the partial file stays in
    the temp folder when it holds anything, else it is removed."""
    why = _why(problem)
    try:
        if os.path.getsize(tmp) > 0:
            return f"the run log could not be written in full ({why}); what was written: {tmp}"
    except OSError:
        pass
    _unlink(tmp)
    return f"no run log: it could not be written ({why})"


def _why(exc: BaseException) -> str:
    """``No space left on device`` for an OSError (its strerror), else its text."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return f"{type(exc).__name__}: {exc}"


def private_temp_folder() -> str:
    """A new folder only this user can enter (mode 0700, random name) in the temp folder."""
    return tempfile.mkdtemp(prefix="mcie-logs-")


def create_log(folder: str) -> tuple[int, str]:
    """``(descriptor, path)`` of a new, empty log file ``FOLDER/mcie-<UTC time>[-N].log``,
    created only if no file or link has that name (``O_EXCL | O_NOFOLLOW``), mode 0600."""
    stem = log_name()[: -len(".log")]
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    for n in range(100):
        path = os.path.join(folder, f"{stem}-{n}.log" if n else f"{stem}.log")
        try:
            return os.open(path, flags, 0o600), path
        except FileExistsError:
            continue  # another failure this second, or a planted name: take the next
    raise FileExistsError(errno.EEXIST, "no free log name", os.path.join(folder, f"{stem}.log"))


def _log_folder(out: str | None) -> str:
    """Where a failure's log goes: ``OUT/logs/`` for a local folder, else a private new one."""
    from mcie import storage

    if out is None or storage.is_remote(out):
        return private_temp_folder()
    folder = os.path.join(out, LOGS_DIR)
    os.makedirs(folder, exist_ok=True)
    return folder


def _keep(tmp: str, out: str) -> str:
    """Move the temporary log ``tmp`` to ``OUT/logs/``; returns its final path."""
    fd, final = create_log(_log_folder(out))
    os.close(fd)
    try:
        os.replace(tmp, final)  # a rename on one filesystem (over our own new, empty file)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            _unlink(final)
            raise
        try:  # the temp folder is on another filesystem: copy into the file we created
            with open(tmp, "rb") as src, open(final, "wb") as dst:
                shutil.copyfileobj(src, dst)
        except OSError:
            _unlink(final)
            raise
        _unlink(tmp)
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
    """Write ``exc``'s traceback to a new ``FOLDER/logs/mcie-<time>.log`` (in a new private
    temporary folder when ``folder`` is None or remote; see :func:`create_log`); returns the
    path. An OSError (a full disk) propagates, with no empty or partial file left behind."""
    base = _log_folder(folder)
    fd, path = create_log(base)
    try:
        with open(fd, "w", errors="backslashreplace") as fh:
            fh.write("".join(traceback.format_exception(exc)))
    except OSError:
        _unlink(path)
        if base != os.path.join(folder or "", LOGS_DIR):  # our own private folder: now empty
            with contextlib.suppress(OSError):
                os.rmdir(base)
        raise
    return path


def traceback_line(exc: BaseException, folder: str | None) -> str:
    """The one line for an unexpected failure: what failed first, then where its traceback
    is, or why there is no traceback file (a full disk must not hide the cause)."""
    try:
        where = f"traceback: {write_traceback(exc, folder)}"
    except OSError as problem:
        where = f"no traceback log: it could not be written ({_why(problem)})"
    return f"{one_line(exc)} ({where})"


def stdout_closed() -> bool:
    """True when stdout is a pipe whose reader has gone (``| head`` finished)."""
    import select

    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(ev & select.POLLERR for _, ev in poller.poll(0))
    except (AttributeError, OSError, ValueError):
        return False
