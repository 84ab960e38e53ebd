"""Shared fixtures (small builds, tiny models and real servers, each made once per session)
and the tiers of the suite.

Tiers: a test is in the fast tier unless it carries one of the markers registered in
pyproject.toml (``slow``, ``ls``, ``browser``, ``cloud``, ``model``); ``make test-fast`` runs
the fast tier only, ``make test`` everything. A test that uses a session resource gets that
resource's marker here (:data:`TIER_OF_FIXTURE`), so it cannot land in the fast tier by
forgetting a decorator; ``slow`` and ``model`` are otherwise put on by hand. Each tier has its
per-test timeout (:data:`TIMEOUT_FACTOR`, setup included); an explicit
``@pytest.mark.timeout`` wins. ``--cpu-durations N`` prints the N tests that used the most
CPU and each tier's wall and CPU seconds: on a shared machine CPU time, not wall time, says
what a test costs.
"""

from __future__ import annotations

import os
import resource
import time

import pytest

# No test ever reaches a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from mcie.cli import main  # noqa: E402

SMALL = ["--samples", "60", "--seed", "5", "--shard-size", "20", "--no-progress"]

#: the tier of every test that uses a session resource or an expensive fixture (name → marker)
TIER_OF_FIXTURE = {
    "ls_cache": "ls",  # under ls_server too, and the tests that start a server of their own
    "browser": "browser",
    "object_stores": "cloud",
    "tiny_models": "model",
    "one_torch_thread": "model",  # what every module of torch-model tests asks for
    "built_two_workers": "slow",  # builds with two worker processes
    "quiet_build": "slow",  # test_cli_messages.py: the same, in a subprocess
}
#: the tiers, in the order a test's tier is named by (its first marker in this list)
TIERS = ("ls", "browser", "cloud", "model", "slow")
#: a marked tier's per-test timeout as a multiple of the default (``timeout`` in pyproject.toml,
#: overridden by ``--timeout`` or ``PYTEST_TIMEOUT``), setup and teardown included: one knob
#: scales them all, and 0 turns them all off. A timeout turns a hang into a failure, so it is
#: sized for a starved machine, not an idle one: a ``nice -n 15`` run beside training jobs on 2
#: cores got 0.7% of a core here (3 CPU seconds took 431 s). The first ``ls`` test of a checkout
#: also migrates Label Studio's database.
TIMEOUT_FACTOR = {"ls": 4, "browser": 3, "cloud": 3, "model": 3, "slow": 3}


def tier(item: pytest.Item) -> str:
    """The tier a collected test is in: its first tier marker, or "fast"."""
    return next((t for t in TIERS if item.get_closest_marker(t)), "fast")


def pytest_itemcollected(item: pytest.Item) -> None:
    """Mark each test with its tier, its timeout and its pytest-xdist group as it is collected,
    before ``-m`` deselects by these markers and before xdist's worker reads the group."""
    from pytest_timeout import get_env_settings

    for fixture, marker in TIER_OF_FIXTURE.items():
        if fixture in getattr(item, "fixturenames", ()):
            item.add_marker(marker)
    name = tier(item)
    # under pytest-xdist (``--dist loadgroup``): a server's tests share one worker, so each
    # server starts once per run; a module's tests share one, so its fixtures are built once
    group = name if name in ("ls", "cloud") else item.nodeid.split("::", 1)[0]
    item.add_marker(pytest.mark.xdist_group(group))
    if name != "fast" and item.get_closest_marker("timeout") is None:
        default = get_env_settings(item.config).timeout or 0
        item.add_marker(pytest.mark.timeout(default * TIMEOUT_FACTOR[name]))


def pytest_collection_finish(session: pytest.Session) -> None:
    """Under ``--dist loadgroup`` every test must carry its group in its id (xdist appends
    ``@group``). pytest 9.2 keeps ids where xdist 3.8 cannot change them: the groups were lost
    silently, a server's tests ran on two workers and two workers migrated one Label Studio
    cache at once (a CI failure). Fail loudly instead."""
    if getattr(session.config.option, "loadgroup", False):
        lost = [i.nodeid for i in session.items if "@" not in i.nodeid]
        if lost:
            raise pytest.UsageError(
                f"pytest-xdist lost the test groups ({lost[0]} has none): use the pytest "
                "that pyproject.toml's dev extra names"
            )


@pytest.fixture(autouse=True)
def _progress_switch_reset():
    """Every test starts with progress on: ``--no-progress`` sets a process-wide switch
    (:func:`mcie.progress.configure`), and a test must not see what an earlier one chose."""
    from mcie import progress

    progress.configure(True)
    yield


def pytest_addoption(parser: pytest.Parser) -> None:
    what = "show the N tests that used the most CPU, and wall and CPU seconds per tier"
    parser.addoption("--cpu-durations", type=int, default=None, metavar="N", help=what)


def _cpu_seconds() -> float:
    """CPU of this process and of its finished children (Beam workers, servers once stopped)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


_COSTS: dict[str, tuple[str, float, float]] = {}  # nodeid → (tier, wall s, CPU s)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem):
    if item.config.getoption("cpu_durations") is None:
        yield
        return
    wall, cpu = time.perf_counter(), _cpu_seconds()
    yield
    _COSTS[item.nodeid] = (tier(item), time.perf_counter() - wall, _cpu_seconds() - cpu)


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    n = config.getoption("cpu_durations")
    if n is None or not _COSTS:
        return
    tr = terminalreporter
    tr.section(f"CPU seconds (this process and finished children; load average {os.getloadavg()[0]:.1f})")
    for nodeid, (name, wall, cpu) in sorted(_COSTS.items(), key=lambda kv: -kv[1][2])[:n]:
        tr.write_line(f"{cpu:7.1f} cpu {wall:7.1f} wall  {name:<7} {nodeid}")
    tr.write_line("tier     tests   wall s    CPU s")
    for name in ("fast", *TIERS):
        rows = [c for c in _COSTS.values() if c[0] == name]
        if rows:
            wall, cpu = sum(r[1] for r in rows), sum(r[2] for r in rows)
            tr.write_line(f"{name:<7} {len(rows):6d} {wall:8.1f} {cpu:8.1f}")


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op torch thread for a test module (``pytestmark = usefixtures(...)``): on a busy
    2-core machine two threads per op oversubscribe the cores and make the model tests several
    times slower (measured: 0.35 s against 4.4 s per train step)."""
    import torch  # only the model tests need it

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def shards(tmp_path_factory) -> str:
    """Glob of a 40-candidate build at 64 px in two shards (two, so a 2-process training run
    gets one each), shared by the model tests, which only read it."""
    import glob

    out = str(tmp_path_factory.mktemp("model") / "demo")
    assert main(["build", "--out", out, "--samples", "40", "--image-size", "64", "--shard-size", "20",
                 "--no-progress"]) == 0  # fmt: skip
    assert len(glob.glob(os.path.join(out, "shards", "*.tar"))) == 2
    return os.path.join(out, "shards", "*.tar")


def build(out: str, *extra: str) -> int:
    """Run ``mcie build`` in-process; returns its exit code."""
    return main(["build", "--out", out, *SMALL, *extra])


@pytest.fixture(scope="session")
def built(tmp_path_factory) -> str:
    """A 60-candidate build (3 units) with one worker."""
    out = str(tmp_path_factory.mktemp("build") / "w1")
    assert build(out, "--workers", "1") == 0
    return out


@pytest.fixture(scope="session")
def built_two_workers(tmp_path_factory) -> str:
    """The same build with two worker processes."""
    out = str(tmp_path_factory.mktemp("build") / "w2")
    assert build(out, "--workers", "2") == 0
    return out


@pytest.fixture(scope="session")
def small_build(tmp_path_factory) -> str:
    """A 24-candidate build at 64 px in two shards, one worker. Read only: a test that changes
    a build works on a copy."""
    out = str(tmp_path_factory.mktemp("small") / "out")
    args = ["build", "--out", out, "--samples", "24", "--seed", "3", "--shard-size", "12"]
    assert main([*args, "--image-size", "64", "--workers", "1", "--no-progress"]) == 0
    return out


@pytest.fixture(scope="session")
def ls_cache(request) -> str:
    """The cache folder holding a migrated Label Studio data dir and its credentials (see
    tests/ls_server.py), migrated on the first use in a checkout; start servers on copies."""
    from ls_server import CACHE_NAME, migrated_data_dir

    cache = str(request.config.cache.mkdir(CACHE_NAME))
    migrated_data_dir(cache)
    return cache


@pytest.fixture(scope="session")
def ls_server(ls_cache, tmp_path_factory):
    """A real Label Studio server for the session: (server, credentials)."""
    from ls_server import start_copy

    server, creds = start_copy(ls_cache, str(tmp_path_factory.mktemp("ls") / "data"))
    yield server, creds
    server.stop()


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> str:
    """Tiny random-weight models written once per session by ``mcie models tiny``; returns
    the path of their models.yaml."""
    root = str(tmp_path_factory.mktemp("tiny-models"))
    assert main(["models", "tiny", root]) == 0
    return os.path.join(root, "models.yaml")


@pytest.fixture(scope="session")
def browser():
    """Headless Chromium (Debian's package, through Playwright), started once per session;
    see tests/browser.py."""
    from browser import launch
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = launch(p)
        yield b
        b.close()


@pytest.fixture(scope="session")
def object_stores(tmp_path_factory):
    """Real object-storage servers on 127.0.0.1, started once per session: a GCS emulator and
    moto's S3 server, each with a bucket ``mcie-test``. Returns ``{"gs": "gs://mcie-test",
    "s3": "s3://mcie-test"}``; the client environment (emulator host, endpoint, dummy
    credentials) is set for the session, so Beam's worker processes inherit it."""
    from storage_servers import start_gcs, start_s3

    work = str(tmp_path_factory.mktemp("object-stores"))
    servers = [start_gcs(work, ["mcie-test"]), start_s3(work, ["mcie-test"])]
    mp = pytest.MonkeyPatch()
    for server in servers:
        for k, v in server.env.items():
            mp.setenv(k, v)
    yield {"gs": "gs://mcie-test", "s3": "s3://mcie-test"}
    mp.undo()
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def bench_runs(tmp_path_factory) -> dict[str, str]:
    """A 16-set benchmark at 64 px run by the identity, oracle and corrupt editors: editor →
    run folder."""
    root = tmp_path_factory.mktemp("bench-report")
    bench = str(root / "bench")
    assert main(["bench", "build", "--out", bench, "--sets", "16", "--image-size", "64", "--seed", "2"]) == 0
    out = {}
    for editor in ("identity", "oracle", "corrupt:0.6"):
        out[editor] = str(root / editor.replace(":", "_"))
        assert main(["bench", "run", "--bench", bench, "--editor", editor, "--out", out[editor]]) == 0
    return out
