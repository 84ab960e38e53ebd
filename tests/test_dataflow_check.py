"""``--runner DataflowRunner`` is checked before anything is submitted and can be inspected
without submitting: the dry run prints the job graph with no network; a real submit without
credentials, or with a missing bucket, exits 1 at once naming the fix (it used to print
``units 0/2 … ETA ?`` for minutes while Beam retried credentials)."""

import json
import os
import subprocess
import sys

import pytest
from apache_beam import version as beam_version

from mcie.exitcodes import UsageError
from mcie.pipeline.dataflow import check_flags
from mcie.pipeline.options import RunOptions

HERE = os.path.dirname(os.path.abspath(__file__))
GCP = ["--beam-arg=--project=my-proj", "--beam-arg=--region=europe-west4"]
SMALL = ["--samples", "40", "--shard-size", "20", "--no-progress"]
#: no ambient credentials and no metadata-server probe: what a machine without Google Cloud has
NO_CLOUD = {"NO_GCE_CHECK": "true", "GOOGLE_APPLICATION_CREDENTIALS": "", "STORAGE_EMULATOR_HOST": ""}


def _cli(tmp_path, *args, env=None):
    """``mcie`` in a fresh process under the network audit; returns (result, remote connects)."""
    audit = str(tmp_path / f"net-{len(os.listdir(tmp_path))}.jsonl")
    base = {k: v for k, v in os.environ.items() if not k.startswith(("GOOGLE_", "STORAGE_EMULATOR"))}
    full = {**base, "CLOUDSDK_CONFIG": str(tmp_path / "gcloud"), **NO_CLOUD, **(env or {})}
    full.update(PYTHONPATH=os.path.join(HERE, "netaudit"), MCIE_NET_AUDIT_LOG=audit)
    full = {k: v for k, v in full.items() if v != ""}
    # a hang (the old behaviour) fails here instead of running for minutes
    res = subprocess.run([sys.executable, "-m", "mcie.cli", *args], capture_output=True, text=True, env=full,
                         timeout=240)  # fmt: skip
    events = []
    if os.path.exists(audit):
        with open(audit) as fh:
            events = [json.loads(line) for line in fh]
    remote = [
        e
        for e in events
        if (
            e["event"] == "connect"
            and isinstance(e["address"], list)
            and e["address"][0] not in ("127.0.0.1", "::1")
        )
        or (e["event"] == "getaddrinfo" and e["host"] not in ("127.0.0.1", "localhost", "::1", None))
    ]
    return res, remote


def test_flags_are_checked_without_network(tmp_path):
    def run(*flags, **kw):
        return RunOptions(runner="DataflowRunner", beam_args=flags, **kw)

    with pytest.raises(UsageError, match="--project.*--region.*--temp_location"):
        check_flags(run())
    base = ("--project=p1", "--region=r", "--temp_location=gs://mcie-tmp/t")
    with pytest.raises(UsageError, match="workers need mcie.*--sdk_container_image.*--extra_package"):
        check_flags(run(*base))
    with pytest.raises(UsageError, match="--sdk_container_image"):
        check_flags(run(*base, "--extra_package=x.whl"), needs_image=True)
    # the old hang: Beam took a one-letter bucket as no bucket and went to make a default one
    with pytest.raises(UsageError, match="'b' is not a valid bucket name"):
        check_flags(run("--project=p1", "--region=r", "--temp_location=gs://b/t", "--sdk_container_image=i"))
    with pytest.raises(UsageError, match="must be a gs:// URL"):
        check_flags(run("--project=p1", "--region=r", "--temp_location=/tmp/t", "--sdk_container_image=i"))
    with pytest.raises(UsageError, match="does not exist"):
        check_flags(run(*base, f"--requirements_file={tmp_path / 'none.txt'}"))
    check_flags(run(*base, "--sdk_container_image=eu.gcr.io/p/mcie:1"))


def test_dry_run_prints_the_job_graph_and_contacts_nothing(tmp_path):
    reqs = tmp_path / "requirements.txt"
    reqs.write_text("# workers\nmcie[dask]==0.1.0\npillow>=10\n")
    out = tmp_path / "o"
    flags = [*GCP, "--beam-arg=--temp_location=gs://mcie-tmp/t", f"--beam-arg=--requirements_file={reqs}"]
    res, remote = _cli(tmp_path, "build", "--out", str(out), *SMALL, "--runner", "DataflowRunner", *flags,
                       "--dry-run", "--json")  # fmt: skip
    assert res.returncode == 0, res.stderr
    plan = json.loads(res.stdout)
    assert [(s["name"], s["transform"]) for s in plan["steps"]] == [
        ("Units", "Create"),
        ("SpreadUnits", "Reshuffle"),
        ("BuildUnits", "ParDo"),
    ]
    assert plan["steps"][0]["elements"] == 2 and plan["steps"][2]["fn"] == "UnitFn"
    assert (plan["units"], plan["items"]) == (2, 40)
    assert plan["staged"]["requirements_file"] == {
        "path": str(reqs),
        "requirements": ["mcie[dask]==0.1.0", "pillow>=10"],
    }
    major, minor = sys.version_info[:2]
    image = f"gcr.io/cloud-dataflow/v1beta3/beam_python{major}.{minor}_sdk:{beam_version.__version__}"
    assert plan["container_image"] == image and plan["container_image_is_default"]
    assert not remote, remote[:3]
    assert not out.exists()  # nothing written
    # the terminal form, and a worker image of one's own
    image = ["--beam-arg=--sdk_container_image=eu.gcr.io/my-proj/mcie:0.1"]
    res, remote = _cli(tmp_path, "build", "--out", str(out), *SMALL, "--runner", "DataflowRunner", *GCP,
                       "--beam-arg=--temp_location=gs://mcie-tmp/t", *image, "--dry-run")  # fmt: skip
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].startswith("dry run: `mcie build` on DataflowRunner, 2 units of work (40 items)")
    assert "  BuildUnits: ParDo UnitFn" in lines
    assert "container image: eu.gcr.io/my-proj/mcie:0.1" in lines
    assert not remote


def test_dry_run_is_for_dataflow(tmp_path):
    res, _ = _cli(tmp_path, "build", "--out", str(tmp_path / "o"), *SMALL, "--dry-run")
    assert res.returncode == 1 and "--dry-run is for --runner DataflowRunner" in res.stderr


def test_submit_without_credentials_exits_1_with_the_fix(tmp_path):
    out = tmp_path / "o"
    flags = ["--beam-arg=--temp_location=gs://mcie-tmp/t", "--beam-arg=--sdk_container_image=i:1"]
    res, remote = _cli(
        tmp_path, "build", "--out", str(out), *SMALL, "--runner", "DataflowRunner", *GCP, *flags
    )
    assert res.returncode == 1
    assert res.stderr.strip().splitlines() == [
        "mcie: error: no Google Cloud credentials found for DataflowRunner: run `gcloud auth "
        "application-default login`, or set GOOGLE_APPLICATION_CREDENTIALS to a service-account key file"
    ]
    assert "units 0/" not in res.stderr and not out.exists()
    assert not remote, remote[:3]


@pytest.fixture(scope="module")
def gcs(tmp_path_factory):
    """A GCS emulator on loopback with the bucket ``mcie-tmp``; its client environment."""
    import storage_servers

    server = storage_servers.start_gcs(str(tmp_path_factory.mktemp("gcs")), ["mcie-tmp"])
    yield server.env
    server.stop()


def test_buckets_are_checked_before_submitting(gcs, tmp_path):
    """With credentials (a key file, read without the network), a missing bucket exits 1 with
    the command that makes it; with every bucket there, the missing Dataflow client library is
    the next thing named (this environment has no apache-beam[gcp])."""
    env = {**gcs, "NO_GCE_CHECK": "true"}
    base = ["build", *SMALL, "--runner", "DataflowRunner", *GCP, "--beam-arg=--sdk_container_image=i:1"]
    res, remote = _cli(tmp_path, *base, "--out", str(tmp_path / "o"), "--beam-arg=--temp_location=gs://mcie-nope/t",
                       env=env)  # fmt: skip
    assert res.returncode == 1
    assert res.stderr.strip() == (
        "mcie: error: bucket gs://mcie-nope (--temp_location) does not exist: create it with "
        "`gcloud storage buckets create gs://mcie-nope --project=my-proj --location=europe-west4`"
    )
    assert not remote, remote[:3]
    res, _ = _cli(
        tmp_path, *base, "--out", "gs://mcie-out/set", "--beam-arg=--temp_location=gs://mcie-tmp/t", env=env
    )
    assert res.returncode == 1 and "bucket gs://mcie-out (--out) does not exist" in res.stderr
    res, remote = _cli(tmp_path, *base, "--out", "gs://mcie-tmp/set", "--beam-arg=--temp_location=gs://mcie-tmp/t",
                       env=env)  # fmt: skip
    assert res.returncode == 1 and "pip install 'apache-beam[gcp]'" in res.stderr, res.stderr
    assert not remote, remote[:3]
