"""Shared fixtures: small builds made once per session through the real CLI and Beam."""

from __future__ import annotations

import os

import pytest

# No test ever reaches a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from mcie.cli import main  # noqa: E402

SMALL = ["--samples", "60", "--seed", "5", "--shard-size", "20", "--no-progress"]


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
def ls_server(request, tmp_path_factory):
    """A real Label Studio server for the session: (server, credentials)."""
    from ls_server import CACHE_NAME, start_copy

    cache = str(request.config.cache.mkdir(CACHE_NAME))
    server, creds = start_copy(cache, str(tmp_path_factory.mktemp("ls") / "data"))
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
