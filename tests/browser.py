"""The one headless browser of the test suite: Debian's ``chromium`` driven by Playwright.

Playwright's own browser download is not reachable from our machines (and ``playwright install``
is never run): the tests drive the distribution's ``chromium`` package through
``executable_path``. When it is missing, :func:`chromium_path` installs it with apt (we run as
root on CI machines); if there is still no browser after that, a run under ``CI=true`` FAILS —
a browser test that silently skips on CI would be a test that never runs — and a local run
skips with the command to fix it.

Use the session-scoped ``browser`` fixture (tests/conftest.py); :func:`new_page` opens a page
that records what a test asserts on afterwards: uncaught page errors, console errors and every
request the page makes (so a test can check that nothing leaves the machine).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import urllib.parse

import pytest

#: Where Debian/Ubuntu put the browser (the first found wins).
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
APT_INSTALL = "apt-get update && apt-get install -y chromium"


def find_chromium() -> str | None:
    """Path of an installed Chromium, or None."""
    for path in (os.environ.get("MCIE_CHROMIUM"), *CHROMIUM_CANDIDATES, shutil.which("chromium")):
        if path and os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def _install_with_apt() -> str:
    """Run ``apt-get install chromium``; returns what went wrong ("" when it ran)."""
    if os.geteuid() != 0:
        return "not root, so apt-get cannot install it"
    if shutil.which("apt-get") is None:
        return "no apt-get on this machine"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    r = subprocess.run(["sh", "-c", APT_INSTALL], env=env, capture_output=True, text=True, timeout=1800)
    return "" if r.returncode == 0 else f"`{APT_INSTALL}` failed: {(r.stderr or r.stdout)[-500:]}"


def chromium_path() -> str:
    """The browser's path, installing Debian's ``chromium`` when missing. Under ``CI=true`` a
    browser still missing fails the test run; elsewhere the test is skipped with the fix."""
    path = find_chromium()
    if path:
        return path
    why = _install_with_apt()
    path = find_chromium()
    if path:
        return path
    why = why or "apt-get installed no chromium binary"
    msg = f"no Chromium for the browser tests ({why}); run: {APT_INSTALL}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(msg, pytrace=False)
    pytest.skip(msg)


def launch(playwright):
    """A headless Chromium launched by Playwright from the distribution's binary."""
    args = ["--no-sandbox"] if os.geteuid() == 0 else []  # Chromium's sandbox refuses root
    return playwright.chromium.launch(executable_path=chromium_path(), headless=True, args=args)


@dataclasses.dataclass
class PageLog:
    """What a page did: uncaught errors, console errors, and the URL of every request."""

    page_errors: list[str] = dataclasses.field(default_factory=list)
    console_errors: list[str] = dataclasses.field(default_factory=list)
    requests: list[str] = dataclasses.field(default_factory=list)

    def off_machine(self) -> list[str]:
        """Requests to anything but loopback (``data:``/``blob:`` URLs never leave the page)."""
        out = []
        for url in self.requests:
            parsed = urllib.parse.urlparse(url)
            if parsed.scheme in ("data", "blob", "about"):
                continue
            if parsed.hostname not in ("127.0.0.1", "localhost", "::1"):
                out.append(url)
        return out


def new_page(browser, **context_args):
    """A page in a fresh context (own cookies) and its :class:`PageLog`."""
    context = browser.new_context(**context_args)
    page = context.new_page()
    log = PageLog()
    page.on("pageerror", lambda exc: log.page_errors.append(str(exc)))
    page.on("console", lambda m: log.console_errors.append(m.text) if m.type == "error" else None)
    page.on("request", lambda req: log.requests.append(req.url))
    return page, log
