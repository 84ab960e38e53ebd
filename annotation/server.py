"""Start and stop a local Label Studio server (``mcie ls serve`` and the test fixture).

The server runs from its own venv (``.venv-ls``, made by ``make install``: label-studio 1.23
pins other versions of Django, pyarrow and its SDK than mcie does), binds to loopback only and
keeps everything under one data dir. Credentials come from the environment only —
``LABEL_STUDIO_USERNAME``, ``LABEL_STUDIO_PASSWORD``, ``LABEL_STUDIO_USER_TOKEN`` — and reach
the child process through its environment, never its command line (which ``ps`` shows to every
user). The legacy token is enabled so that the preset token works; Label Studio reads that
setting when it first creates the user, i.e. at the first start of a data dir.

Label Studio silently moves to the next port when the asked one is busy, so the real port is
read back from the server's own "Starting development server at ..." line.
"""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from mcie.exitcodes import ServiceError, UsageError

#: Environment variables holding the preset user (never put on a command line).
ENV_USERNAME = "LABEL_STUDIO_USERNAME"
ENV_PASSWORD = "LABEL_STUDIO_PASSWORD"
ENV_TOKEN = "LABEL_STUDIO_USER_TOKEN"
#: Where mcie finds the server's venv when ``--venv`` is not given.
ENV_VENV = "MCIE_LS_VENV"
LOOPBACK = ("127.0.0.1", "localhost", "::1")
#: Shortest preset token we pass on (Label Studio applies tokens longer than 5 characters).
MIN_TOKEN_LENGTH = 16

#: Label Studio reports errors to its vendor's Sentry by default, from the server (SENTRY_DSN)
#: and from every reviewer's browser (FRONTEND_SENTRY_DSN: the page loads Sentry's script from
#: a CDN and posts error reports). An empty DSN turns both off (label_studio/core/settings/
#: label_studio.py, templates/base.html); the LABEL_STUDIO_ spelling is the one it reads first.
NO_SENTRY = {
    f"{prefix}{name}": ""
    for prefix in ("", "LABEL_STUDIO_", "HEARTEX_")
    for name in ("SENTRY_DSN", "FRONTEND_SENTRY_DSN")
}

#: Label Studio 1.23's /heidi-tips view (called on every page load) fetches tips from
#: raw.githubusercontent.com with ``requests`` (label_studio/core/views.py); no setting turns it
#: off. ``requests`` honours the proxy variables: a proxy on a closed loopback port (9, discard)
#: makes that fetch fail at once, without a name lookup, and the view answers 404 as in an
#: air-gapped install. Loopback (the local-files storage, our API calls) bypasses it through
#: NO_PROXY. Both spellings are set: ``requests`` reads the lower-case one first.
DEAD_PROXY = "http://127.0.0.1:9"
#: the folder holding ``mcie_ls_settings`` (Label Studio's settings, stored files private)
LS_SETTINGS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ls_settings")
NO_EGRESS = {
    **{
        name: DEAD_PROXY
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")
    },
    **{name: ",".join(LOOPBACK) for name in ("NO_PROXY", "no_proxy")},
}

#: the server creates its files for its user only: the database holds the API token in plain text
PRIVATE_UMASK = 0o077


def make_private(folder: str) -> None:
    """Take group and other permissions off ``folder`` and everything in it (folders 0700,
    files 0600 at most): a data dir made by an earlier version (0755, its database 0644) let
    every local user read the token. Symlinks are not followed."""
    for root, dirs, files in os.walk(folder):
        for name in [*dirs, *files]:
            path = os.path.join(root, name)
            st = os.lstat(path)
            if not stat.S_ISLNK(st.st_mode) and st.st_mode & 0o077:
                os.chmod(path, stat.S_IMODE(st.st_mode) & 0o700)
    os.chmod(folder, 0o700)


_STARTED = re.compile(r"Starting development server at https?://[^:/\s]+:(\d+)/")


def default_venv() -> str:
    """``$MCIE_LS_VENV``, else ``.venv-ls`` at the repository root (mcie installs editable)."""
    if os.environ.get(ENV_VENV):
        return os.environ[ENV_VENV]
    return str(Path(__file__).resolve().parents[1] / ".venv-ls")


def credentials_from_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """The preset user's environment variables; UsageError naming the missing ones."""
    env = os.environ if env is None else env
    names = (ENV_USERNAME, ENV_PASSWORD, ENV_TOKEN)
    missing = [n for n in names if not env.get(n)]
    if missing:
        raise UsageError(
            "set the Label Studio user in the environment (never on the command line): " + ", ".join(missing)
        )
    if len(env[ENV_TOKEN]) < MIN_TOKEN_LENGTH:
        # Label Studio ignores a shorter token, and prints it to its log while doing so
        raise UsageError(f"{ENV_TOKEN} is too short: use at least {MIN_TOKEN_LENGTH} characters")
    return {n: env[n] for n in names}


def token_accepted(url: str, token: str) -> bool:
    """Whether the server takes ``token`` (legacy ``Token`` header) for its API."""
    req = urllib.request.Request(
        f"{url}/api/current-user/whoami", headers={"Authorization": f"Token {token}"}
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as r:  # noqa: S310 - our own loopback URL
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False


@dataclasses.dataclass
class ServerConfig:
    """How to run the server. ``port`` is the first port tried (Label Studio moves up when it
    is busy); ``document_root`` is the local-files root (default ``{data_dir}/files``)."""

    data_dir: str
    port: int = 8080
    host: str = "127.0.0.1"
    venv: str = dataclasses.field(default_factory=default_venv)
    document_root: str | None = None
    startup_timeout_s: float = 300.0

    def __post_init__(self) -> None:
        if self.host not in LOOPBACK:
            raise UsageError(f"host {self.host!r}: the server binds to loopback only ({', '.join(LOOPBACK)})")
        if not 1 <= self.port <= 65535:
            raise UsageError(f"port {self.port} is not in 1..65535")
        self.data_dir = os.path.abspath(self.data_dir)
        self.document_root = os.path.abspath(self.document_root or os.path.join(self.data_dir, "files"))
        if not os.path.exists(self.executable):
            raise UsageError(
                f"no Label Studio server at {self.executable}; run `make install` (it creates .venv-ls) "
                f"or set {ENV_VENV} to a venv with label-studio==1.23.2"
            )

    @property
    def executable(self) -> str:
        return os.path.join(self.venv, "bin", "label-studio")


class LabelStudioServer:
    """A running Label Studio process. Use as a context manager or call start()/stop()."""

    def __init__(
        self, config: ServerConfig, env: dict[str, str] | None = None, extra_env: dict[str, str] | None = None
    ):
        """``env``: where the preset user's variables are read (default ``os.environ``);
        ``extra_env``: set last in the child's environment (the tests' network audit)."""
        self.config = config
        self._creds = credentials_from_env(env)
        self._extra_env = dict(extra_env or {})
        self._proc: subprocess.Popen | None = None
        self.port: int | None = None
        self.log_path = os.path.join(config.data_dir, "server.log")

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("server not started")
        return f"http://{self.config.host}:{self.port}"

    def _env(self) -> dict[str, str]:
        c = self.config
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LABEL_STUDIO_", "DJANGO_"))}
        env.update(self._creds)
        env.update(
            {
                "LABEL_STUDIO_BASE_DATA_DIR": c.data_dir,
                "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
                "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
                "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": c.document_root,
                # no self-service accounts: any local user could otherwise sign up and read
                # every project; reviewers join by the organisation's invite link
                "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
                "LATEST_VERSION_CHECK": "false",
                "COLLECT_ANALYTICS": "false",
                **NO_SENTRY,
                **NO_EGRESS,
                "PYTHONUNBUFFERED": "1",
                # its settings with Django's stored files private (annotation/ls_settings/)
                "DJANGO_SETTINGS_MODULE": "mcie_ls_settings",
            }
        )
        env.update(self._extra_env)
        paths = [LS_SETTINGS_DIR, *env.get("PYTHONPATH", "").split(os.pathsep)]
        env["PYTHONPATH"] = os.pathsep.join(p for p in dict.fromkeys(paths) if p)
        return env

    def start(self) -> str:
        """Start the server, wait until it answers /health; returns its URL."""
        c = self.config
        os.makedirs(c.data_dir, mode=0o700, exist_ok=True)
        make_private(c.data_dir)
        os.makedirs(c.document_root, exist_ok=True)
        cmd = [c.executable, "start", "--no-browser", "--internal-host", c.host, "--port", str(c.port)]
        self.port = None
        offset = os.path.getsize(self.log_path) if os.path.exists(self.log_path) else 0
        fd = os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        log = os.fdopen(fd, "ab")  # the child owns it until stop()
        self._proc = subprocess.Popen(
            cmd, env=self._env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            umask=PRIVATE_UMASK,
        )  # fmt: skip
        log.close()
        try:
            self._wait_ready(offset)
        except BaseException:
            self.stop()
            raise
        return self.url

    def _log_port(self, offset: int) -> int | None:
        with open(self.log_path, "rb") as fh:
            fh.seek(offset)
            found = _STARTED.findall(fh.read().decode(errors="replace"))
        return int(found[-1]) if found else None

    def _wait_ready(self, offset: int) -> None:
        """Wait for this start's port line (the log is appended across starts) and /health."""
        deadline = time.monotonic() + self.config.startup_timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise ServiceError(
                    f"Label Studio exited with code {self._proc.returncode} while starting; "
                    f"see {self.log_path}"
                )
            if self.port is None:
                self.port = self._log_port(offset)
            if self.port is not None and _healthy(f"http://{self.config.host}:{self.port}"):
                return
            time.sleep(0.5)
        raise ServiceError(
            f"Label Studio did not become healthy in {self.config.startup_timeout_s:.0f} s; "
            f"see {self.log_path}"
        )

    def stop(self, timeout_s: float = 20.0) -> None:
        """Stop the server's process group (SIGTERM, then SIGKILL after ``timeout_s``)."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        pgid = os.getpgid(proc.pid)
        os.killpg(pgid, signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(pgid, signal.SIGKILL)
            proc.wait()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self) -> LabelStudioServer:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as r:  # noqa: S310 - our own loopback URL
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False


def serve_forever(config: ServerConfig) -> int:
    """``mcie ls serve``: start, print how to reach it, wait for Ctrl-C/SIGTERM, stop cleanly."""
    server = LabelStudioServer(config)

    def _term(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _term)
    print(f"starting Label Studio (data dir {config.data_dir}) ...", file=sys.stderr, flush=True)
    try:
        url = server.start()
        if not token_accepted(url, server._creds[ENV_TOKEN]):
            print(
                f"warning: the server refuses {ENV_TOKEN}: its user was created with another token "
                "(Label Studio sets the token at a data dir's first start only)",
                file=sys.stderr,
                flush=True,
            )
        print(f"Label Studio is up: {url}", flush=True)
        print(f"  export LABEL_STUDIO_URL={url}", flush=True)
        print(f"  export LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT={config.document_root}", flush=True)
        print("  (the token is the LABEL_STUDIO_USER_TOKEN you set; Ctrl-C stops the server)", flush=True)
        while server.running:
            time.sleep(1)
        raise ServiceError(f"Label Studio exited unexpectedly; see {server.log_path}")
    except KeyboardInterrupt:
        print("stopping Label Studio ...", file=sys.stderr, flush=True)
        return 0
    finally:
        server.stop()
