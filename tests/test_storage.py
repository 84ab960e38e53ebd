"""The storage layer (mcie.storage) on a local folder and on real object-storage servers on
127.0.0.1 (a GCS emulator, moto's S3 server): the same calls give the same answers."""

from __future__ import annotations

import hashlib
import uuid

import pytest

from mcie import storage


@pytest.fixture(
    params=["local", pytest.param("gs", marks=pytest.mark.cloud), pytest.param("s3", marks=pytest.mark.cloud)]
)
def root(request, tmp_path):
    """A fresh folder: local, or a new prefix in a bucket on a loopback server."""
    if request.param == "local":
        return str(tmp_path / "run[1]")
    stores = request.getfixturevalue("object_stores")
    return f"{stores[request.param]}/t-{uuid.uuid4().hex[:8]}/run[1]"


def test_atomic_write_read_list_and_digest(root):
    data = b"mcie" * 3000
    assert storage.is_empty_folder(root)
    d = storage.atomic_write(storage.join(root, "a", "x.bin"), data)
    assert d == storage.FileDigest(len(data), hashlib.sha256(data).hexdigest())
    storage.atomic_write(storage.join(root, "a", "y.json"), '{"k": 1}')
    storage.atomic_write(storage.join(root, "a", "b", "deep.bin"), b"z")
    assert not storage.is_empty_folder(root)
    # the folder name holds "[1]": escaped, it matches only itself; "*" stays in one folder
    names = [storage.relpath(p, root) for p in storage.list_folder(storage.join(root, "a"))]
    assert names == ["a/x.bin", "a/y.json"]
    assert [storage.basename(p) for p in storage.list_folder(storage.join(root, "a"), "*.json")] == ["y.json"]
    assert storage.glob_sizes(storage.join(storage.escape(root), "a", "*.bin")) == [
        (storage.join(root, "a", "x.bin"), len(data))
    ]
    assert storage.read_bytes(storage.join(root, "a", "x.bin")) == data
    assert storage.read_json(storage.join(root, "a", "y.json")) == {"k": 1}
    assert storage.size(storage.join(root, "a", "x.bin")) == len(data)
    assert storage.digest(storage.join(root, "a", "x.bin")) == d
    with storage.open_read(storage.join(root, "a", "x.bin")) as fh:  # seekable: tarfile needs it
        fh.seek(4 * 2999)
        assert fh.read() == b"mcie"
    assert storage.exists(storage.join(root, "a", "x.bin"))
    assert not storage.exists(storage.join(root, "a", "nope.bin"))
    with pytest.raises(FileNotFoundError):
        storage.read_bytes(storage.join(root, "a", "nope.bin"))


def test_a_failed_write_leaves_nothing_under_any_name(root):
    path = storage.join(root, "s", "unit.tar")
    storage.atomic_write(path, b"old")
    with pytest.raises(RuntimeError), storage.atomic_open(path) as fh:
        fh.write(b"half of a new file")
        raise RuntimeError("worker died")
    assert storage.read_bytes(path) == b"old"  # the old file untouched, no temporary left
    assert [storage.basename(p) for p in storage.list_folder(storage.join(root, "s"))] == ["unit.tar"]


def test_overwrite_copy_and_delete(root):
    a, b = storage.join(root, "a.bin"), storage.join(root, "sub", "b.bin")
    storage.atomic_write(a, b"one")
    storage.atomic_write(a, b"two")
    assert storage.read_bytes(a) == b"two"
    storage.copy(a, b)
    assert storage.read_bytes(b) == b"two"
    storage.delete([a, storage.join(root, "never-written")])
    assert not storage.exists(a) and storage.exists(b)


def test_paths():
    assert storage.join("gs://b/run/", "shards", "x.tar") == "gs://b/run/shards/x.tar"
    assert storage.relpath("s3://b/run/shards/x.tar", "s3://b/run/") == "shards/x.tar"
    assert storage.is_remote("gs://b/x") and not storage.is_remote("/tmp/x")
    assert not storage.is_remote("file:///tmp/x") and storage.join("file:///tmp", "x") == "/tmp/x"
    assert storage.escape("a[1]*?") == "a[[]1][*][?]"
    assert storage.basename("gs://b/run/") == "run"


def test_an_unknown_scheme_is_a_usage_error():
    from mcie.exitcodes import UsageError

    with pytest.raises(UsageError, match="nosuch://b/x"):
        storage.read_bytes("nosuch://b/x")


def test_s3_calls_share_one_client_per_endpoint(object_stores, monkeypatch):
    """Beam makes a boto3 client per S3 call (0.27 s of CPU each, measured); mcie.storage
    makes it reuse one per set of S3 options and AWS environment."""
    from apache_beam.io.aws.clients.s3 import boto3_client
    from apache_beam.options.pipeline_options import PipelineOptions

    url = f"{object_stores['s3']}/shared-{uuid.uuid4().hex[:8]}.json"
    storage.write_json(url, {"a": 1})
    assert storage.exists(url) and storage.read_json(url) == {"a": 1}
    options = PipelineOptions([])
    first = boto3_client.Client(options)
    assert boto3_client.Client(options) is first and boto3_client.Client(PipelineOptions([])) is first
    assert boto3_client.Client(PipelineOptions(["--s3_region_name=eu-west-3"])) is not first
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # another server: another client
    assert boto3_client.Client(options) is not first
