import io
import json
import tarfile

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from mcie.images import decode_image, decode_mask
from mcie.reasons import DESCRIPTIONS, Reason, Status, parse_reason
from mcie.records import EditSample, SubEdit, content_key, mask_box
from mcie.shards import read_tar, sample_members, write_tar
from mcie.tables import RECORD_SCHEMA, read_records, write_records
from mcie.transforms.annotate import MaskAnnotator
from mcie.transforms.judge import JudgeFilter
from mcie.transforms.synthetic.edits import edit_type
from mcie.transforms.synthetic.generator import SyntheticConfig, SyntheticSource
from mcie.transforms.synthetic.judge import PixelJudge


@pytest.fixture(scope="module")
def samples():
    src = SyntheticSource(SyntheticConfig(image_size=64))
    out = []
    for i in range(6):
        s, _ = src.generate(3, i)
        JudgeFilter().apply(PixelJudge().judge(MaskAnnotator().annotate(s)))
        out.append(s)
    return out


def _same(a: EditSample, b: EditSample) -> None:
    assert a.to_json() == b.to_json()
    assert (a.src == b.src).all() and (a.tgt == b.tgt).all()
    for x, y in zip(a.sub_edits, b.sub_edits, strict=True):
        assert (x.mask == y.mask).all()
        assert (x.ground_mask is None) == (y.ground_mask is None)
        if x.ground_mask is not None:
            assert (x.ground_mask == y.ground_mask).all()


def test_parquet_round_trip_through_pyarrow(tmp_path, samples):
    path = str(tmp_path / "part-000000.parquet")
    write_records(path, samples)
    table = pq.read_table(path)
    assert table.schema.equals(RECORD_SCHEMA)
    assert table.column("key").to_pylist() == sorted(s.key for s in samples)
    back = {s.key: s for s in read_records(path)}
    for s in samples:
        _same(s, back[s.key])


def test_schema_version_is_checked(samples):
    row = samples[0].to_row()
    row["schema_version"] = 99
    with pytest.raises(ValueError, match="schema_version 99"):
        EditSample.from_row(row)


def test_shard_members_layout_and_round_trip(tmp_path, samples):
    s = samples[0]
    names = [n for n, _ in sample_members(s)]
    k = len(s.sub_edits)
    assert names == [
        f"{s.key}.src.jpg",
        f"{s.key}.tgt.jpg",
        *[f"{s.key}.mask{i}.png" for i in range(k)],
        f"{s.key}.json",
    ]
    lossless = dict(sample_members(s, lossless=True))
    assert (decode_image(lossless[f"{s.key}.tgt.png"]) == s.tgt).all()
    path = str(tmp_path / "a.tar")
    ordered = sorted(samples, key=lambda x: x.key)
    assert write_tar(path, [sample_members(x) for x in ordered]) == len(samples)
    got = list(read_tar(path))
    assert [key for key, _ in got] == [x.key for x in ordered]
    members = dict(got)[s.key]
    meta = json.loads(members["json"])
    assert len(meta["sub_edits"]) == k and meta["instruction"] == s.instruction
    mask = decode_mask(members["mask0.png"])
    assert mask.shape == s.src.shape[:2] and (mask == s.sub_edits[0].mask).all()
    with Image.open(io.BytesIO(members["mask0.png"])) as im:
        assert im.mode == "L" and set(np.unique(np.asarray(im))) <= {0, 255}


def test_tars_are_byte_reproducible(tmp_path, samples):
    members = [sample_members(x) for x in sorted(samples, key=lambda x: x.key)]
    write_tar(str(tmp_path / "1.tar"), members)
    write_tar(str(tmp_path / "2.tar"), members)
    assert (tmp_path / "1.tar").read_bytes() == (tmp_path / "2.tar").read_bytes()
    with tarfile.open(tmp_path / "1.tar") as tar:
        assert {m.mtime for m in tar.getmembers()} == {0}


def test_keys_are_content_hashes_without_dots(samples):
    for s in samples:
        assert "." not in s.key and len(s.key) == 20
    assert content_key(b"a", b"bc") != content_key(b"ab", b"c")  # length-prefixed parts
    bad = EditSample("a.b", "x", "h", samples[0].src, samples[0].tgt, "i", samples[0].sub_edits)
    with pytest.raises(ValueError, match="dot"):
        sample_members(bad)


def test_reason_codes_are_one_list():
    assert set(DESCRIPTIONS) == set(Reason)
    assert parse_reason("background_changed") is Reason.BACKGROUND_CHANGED
    with pytest.raises(ValueError, match="allowed: .*sub_edit_not_executed"):
        parse_reason("blurry")
    assert {s.value for s in Status} == {"candidate", "accepted", "rejected", "failed", "pending"}


def test_sub_edit_validation_and_boxes():
    with pytest.raises(ValueError, match="edit_type"):
        SubEdit("../explode", "x", "y")  # a name from untrusted input has one shape
    with pytest.raises(ValueError, match="unknown edit type 'explode'; allowed: recolour, remove, add"):
        edit_type("explode")  # which types exist is the registry's to say
    m = np.zeros((8, 8), dtype=bool)
    assert mask_box(m) is None
    m[2:4, 3:7] = True
    assert mask_box(m) == (3, 2, 7, 4)
