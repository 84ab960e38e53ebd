"""What the CLI prints and how it exits (issue 14 "Messages", issue 15 part 4): Beam's log off
the terminal, one line per failure with the traceback in a log file, damaged shards named with
their key, usage errors exit 1 before anything is written, a closed stdout, deprecated
spellings, progress bars. Each test reproduces a defect seen on main before the fix."""

from __future__ import annotations

import fcntl
import io
import json
import os
import pty
import re
import shutil
import struct
import subprocess
import sys
import tarfile
import termios

import pytest
from PIL import Image

from mcie.cli import build_parser, main

MCIE = [sys.executable, "-m", "mcie.cli"]
#: what a Beam log line or its import-time warning looks like on a terminal
BEAM_NOISE = re.compile(r"apache_beam|apitools|sdk_worker|semi_persistent|^INFO|^WARNING|Traceback")


def _run(*argv: str, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([*MCIE, *argv], capture_output=True, text=True, env=env, timeout=600, **kw)


@pytest.fixture(scope="module")
def quiet_build(tmp_path_factory):
    """A 2-worker build through the real CLI in a subprocess, as `make demo` runs it (progress
    on): its output folder and what it printed."""
    out = str(tmp_path_factory.mktemp("cli") / "demo")
    proc = _run("build", "--out", out, "--samples", "20", "--seed", "3", "--shard-size", "10",
                "--image-size", "64", "--workers", "2")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return out, proc


@pytest.fixture(scope="module")
def bench_dir(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("cli") / "bench")
    assert main(["bench", "build", "--out", out, "--sets", "4", "--image-size", "32"]) == 0
    return out


# ------------------------------------------------------------------------ Beam's log


def test_build_prints_no_beam_log_line(quiet_build):
    _, proc = quiet_build
    out_lines = proc.stdout.splitlines()
    err_lines = proc.stderr.splitlines()
    assert out_lines[0].startswith("candidates: 20  ")
    assert out_lines[-1].startswith("time: ")
    noise = [ln for ln in out_lines + err_lines if BEAM_NOISE.search(ln)]
    assert noise == []  # before: 44 lines on stderr (Beam INFO, 3x apitools) for 4 of ours
    assert all(ln.startswith("[build demo] units ") for ln in err_lines)  # progress only


@pytest.mark.slow
def test_verbose_brings_beam_log_back(tmp_path):
    proc = _run("build", "-v", "--out", str(tmp_path / "v"), "--samples", "4", "--shard-size", "4",
                "--image-size", "64", "--no-progress")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"^INFO apache_beam\.", proc.stderr, re.M)
    assert "apitools" not in proc.stderr  # dropped at its root even with -v


@pytest.mark.slow
def test_apitools_warning_is_dropped_at_its_root():
    code = "import mcie.logs as l; l.setup() if sys.argv[1] == 'mcie' else None; import apache_beam"
    plain = subprocess.run(
        [sys.executable, "-c", "import sys; " + code, "plain"], capture_output=True, text=True
    )
    ours = subprocess.run(
        [sys.executable, "-c", "import sys; " + code, "mcie"], capture_output=True, text=True
    )
    assert "apitools not found" in plain.stderr  # Beam's own import says it, on the root logger
    assert ours.stderr == ""


# ------------------------------------------------------------ the model libraries' log


def _model_run(*argv: str) -> subprocess.CompletedProcess:
    """``mcie ARGV`` in a subprocess whose environment carries none of the libraries' own
    switches (so what it prints is what mcie decides)."""
    switches = ("TRANSFORMERS_VERBOSITY", "DIFFUSERS_VERBOSITY", "HF_HUB_DISABLE_PROGRESS_BARS")
    env = {k: v for k, v in os.environ.items() if k not in switches}
    return subprocess.run([*MCIE, *argv], capture_output=True, text=True, env={**env, "HF_HUB_OFFLINE": "1"},
                          timeout=600)  # fmt: skip


def test_model_commands_are_quiet_unless_verbose(tiny_models, tmp_path):
    """A tiny InstructPix2Pix over one set and a tiny MCIE-E1 edit: no "Loading weights" or
    "Loading pipeline components" bars, no torchvision fallback, no CLIP truncation lines;
    with -v the libraries' records come back through our log handler."""
    from mcie.model.config import MCIEConfig
    from mcie.model.editor import MCIEEditor

    pipe = os.path.join(os.path.dirname(tiny_models), "instruct-pix2pix")
    bench = str(tmp_path / "bench")
    assert main(["bench", "build", "--out", bench, "--sets", "1", "--image-size", "64"]) == 0
    run = ["bench", "run", bench, "--editor", f"instruct-pix2pix:{pipe}", "--steps", "1", "--no-progress"]
    quiet = _model_run(*run, "--out", str(tmp_path / "q"))
    assert quiet.returncode == 0, quiet.stderr
    # before: 7 lines on stderr (2 torchvision fallbacks, 2 bars, 2 truncation warnings)
    assert quiet.stderr == "" and len(quiet.stdout.splitlines()) == 1
    loud = _model_run("-v", *run, "--out", str(tmp_path / "v"))
    assert loud.returncode == 0, loud.stderr
    assert re.search(r"^WARNING diffusers\.pipelines\.\S+: The following part of your input was truncated "
                     r"because CLIP", loud.stderr, re.M)  # fmt: skip
    assert "Loading pipeline components" in loud.stderr
    ckpt = str(tmp_path / "ckpt")
    MCIEEditor.from_config(MCIEConfig.preset_config("tiny"), seed=0).save(ckpt)
    src = os.path.join(bench, "src.png")
    Image.new("RGB", (32, 32), (200, 40, 40)).save(src)
    edit = ["edit", "--checkpoint", ckpt, "--image", src, "--instruction", "Make the red circle blue.",
            "--steps", "1", "--decomposer", "none", "--no-progress"]  # fmt: skip
    quiet = _model_run(*edit, "--out", str(tmp_path / "q.png"))
    assert quiet.returncode == 0, quiet.stderr
    assert "Loading weights" not in quiet.stderr and "regions used" in quiet.stdout
    loud = _model_run("-v", *edit, "--out", str(tmp_path / "v.png"))
    assert loud.returncode == 0 and "Loading weights" in loud.stderr


def test_library_warnings_of_our_calls_are_logged_off_the_terminal(tiny_models, capsys):
    """diffusers' ``torch_dtype`` FutureWarning, raised inside ``weights.from_pretrained``:
    nothing on stderr by default; a ``py.warnings`` record through our handler with -v."""
    import torch
    from diffusers import StableDiffusionInpaintPipeline

    from mcie import logs, weights

    folder = os.path.join(os.path.dirname(tiny_models), "inpaint")
    load = StableDiffusionInpaintPipeline.from_pretrained
    try:
        for verbose in (0, 1):
            logs.setup(verbose)
            capsys.readouterr()
            weights.from_pretrained(load, folder, "inpainting editor", torch_dtype=torch.float32)
            err = capsys.readouterr().err
            if verbose:
                deprecation = r"^WARNING py\.warnings: .*FutureWarning: `torch_dtype` is deprecated"
                assert re.search(deprecation, err, re.M)
                assert "Loading pipeline components" in err  # the bars come back with -v
            else:
                assert err == ""
    finally:
        logs.setup(0)


def test_regions_used_says_one_region():
    from mcie.model.edit_cli import regions_used

    assert [regions_used(n) for n in (0, 1, 3)] == ["0 regions used", "1 region used", "3 regions used"]


# ------------------------------------------------------------------ failures: one line


@pytest.mark.slow
def test_failure_in_a_beam_worker_is_one_line_and_a_log(tmp_path):
    table, out = str(tmp_path / "gen"), str(tmp_path / "ann")
    assert main(["generate", "--out", table, "--samples", "8", "--shard-size", "4", "--image-size", "64",
                 "--no-progress"]) == 0  # fmt: skip
    part = os.path.join(table, "part-000001.parquet")
    with open(part, "r+b") as fh:
        fh.truncate(os.path.getsize(part) // 2)
    proc = _run("annotate", table, "--out", out, "--workers", "2", "--no-progress")
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr  # before: ~380 lines of Beam tracebacks
    line = lines[0]
    assert line.startswith("mcie: run failed: unit 1 (items 0-3) of annotate")
    assert "part-000001.parquet" in line and "ArrowInvalid" in line
    log = re.search(r"\(full log: (\S+\.log)\)$", line).group(1)
    assert os.path.dirname(log) == os.path.join(out, "logs")
    assert re.fullmatch(r"mcie-\d{8}T\d{6}Z\.log", os.path.basename(log))
    with open(log) as fh:
        text = fh.read()
    assert "Traceback" in text and "ArrowInvalid" in text and "sdk_worker" in text


def test_failure_names_the_sample(tmp_path, monkeypatch, capsys):
    from mcie.transforms.annotate import MaskAnnotator

    real = MaskAnnotator.annotate

    def boom(self, sample):
        if sample.provenance["index"] == 5:
            raise RuntimeError("detector out of memory")
        return real(self, sample)

    monkeypatch.setattr(MaskAnnotator, "annotate", boom)
    out = str(tmp_path / "b")
    argv = ["build", "--out", out, "--samples", "8", "--shard-size", "4", "--image-size", "64"]
    assert main([*argv, "--error-policy", "raise", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    m = re.match(
        r"mcie: run failed: unit 1 \(items 4-7\) of build, sample ([0-9a-f]{20}) \(source (\S+)\): "
        r"RuntimeError: detector out of memory \(in Beam step 'BuildUnits'\) \(full log: (\S+)\)$",
        err[0],
    )
    assert m, err[0]
    with open(m.group(3)) as fh:
        assert "boom" in fh.read()  # the traceback, in the run log


# ------------------------------------------------------------------ damaged shards


def _rewrite_first_sample(shard: str, change) -> str:
    """Rewrite ``shard`` with the first sample's members passed through ``change(name, data)``
    (None drops a member); returns that sample's key."""
    with tarfile.open(shard) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    key = members[0][0].name.split(".")[0]
    with tarfile.open(shard, "w", format=tarfile.GNU_FORMAT) as tar:
        for m, data in members:
            if m.name.startswith(key + "."):
                data = change(m.name, data)
                if data is None:
                    continue
                m.size = len(data)
            tar.addfile(m, io.BytesIO(data))
    return key


def _damaged(quiet_build, tmp_path, change) -> tuple[str, str, str]:
    src, _ = quiet_build
    out = str(tmp_path / "damaged")
    shutil.copytree(src, out)
    shard = os.path.join(out, "shards", "mcie-000000.tar")
    return out, shard, _rewrite_first_sample(shard, change)


def test_missing_json_member_names_shard_and_key(quiet_build, tmp_path, capsys):
    out, shard, key = _damaged(quiet_build, tmp_path, lambda n, d: None if n.endswith(".json") else d)
    assert main(["preview", out, "--out", str(tmp_path / "p.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"mcie: run failed: {shard}: bad sample: {key}: unreadable JSON member (KeyError: 'json')"
    assert not os.path.exists(tmp_path / "p.png")


def test_mistyped_json_names_shard_and_key(quiet_build, tmp_path, capsys):
    def retype(name, data):
        if not name.endswith(".json"):
            return data
        meta = json.loads(data)
        meta["sub_edits"][0]["edit_type"] = ["recolour"]  # a list where readers expect text
        return json.dumps(meta).encode()

    out, shard, key = _damaged(quiet_build, tmp_path, retype)
    want = f"{shard}: bad sample: {key}: unreadable JSON member (TypeError: sub_edits[0].edit_type is list"
    # before: `bench build` failed with a bare "ArrowTypeError: Expected bytes, got a 'list' object"
    # and `ls shard` copied the sample into the final shards
    for argv in (["bench", "build", out, "--out", str(tmp_path / "b"), "--holdout", "0.5"],
                 ["ls", "shard", out, "--out", str(tmp_path / "final"), "--include-unreviewed"]):  # fmt: skip
        assert main(argv) == 2
        assert want in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "b") and not os.path.exists(tmp_path / "final")


# ------------------------------------------------------------------ usage errors: exit 1


RUN = ["bench", "run", "{bench}", "--out", "{new}", "--editor"]


@pytest.mark.parametrize(
    "argv,message",
    [
        ([*RUN, "corrupt:7"], "corrupt:RATE is a failure rate in [0, 1], got 7"),
        ([*RUN, "nope"], "unknown editor 'nope'"),
        ([*RUN, "instruct-pix2pix:{new}/none"], "no such folder"),  # before: exit 2, HFValidationError
        ([*RUN, "oracle", "--limit", "0"], "must be >= 1, got 0"),
        ([*RUN, "oracle", "--limit", "-1"], "must be >= 1, got -1"),
        ([*RUN, "oracle", "--steps", "0"], "must be >= 1, got 0"),
        (["bench", "run", "{bench}", "--editor", "oracle", "--out", "{file}"], "is not a directory"),
        (["bench", "compare", "{bench}", "--out", "{file}"], "exists and is not a directory"),
        (["bench", "build", "--image-size", "7", "--out", "{new}"], "image_size must be a multiple of 8"),
        (["models", "tiny", "--out", "{file}"], "exists and is not a directory"),
        (["preview", "{bench}", "--n", "0"], "must be >= 1, got 0"),
        (["train", "{new}/*.tar", "--out", "{new}", "--max-steps", "0"], "--max-steps must be >= 1"),
        # refused after its folder was made (before: an empty folder stayed behind)
        ([*RUN, "oracle", "--scheduler", "ddim"], "--scheduler applies to mcie-e1"),
    ],
)
def test_usage_errors_exit_1_and_leave_nothing(argv, message, bench_dir, tmp_path, capsys):
    new, file = str(tmp_path / "new"), str(tmp_path / "a-file")
    with open(file, "w") as fh:
        fh.write("keep")
    argv = [a.format(bench=bench_dir, new=new, file=file) for a in argv]
    assert main(argv) == 1
    assert message in capsys.readouterr().err
    assert not os.path.exists(new)  # nothing written, no empty folder
    with open(file) as fh:
        assert fh.read() == "keep"


def test_edit_out_checked_before_loading_or_sampling(tmp_path, capsys):
    folder = str(tmp_path / "edits")
    os.makedirs(folder)
    argv = ["edit", "--checkpoint", str(tmp_path / "no-such-ckpt"), "--image", str(tmp_path / "no.png"),
            "--instruction", "Make the red circle blue.", "--threads", "1"]  # fmt: skip
    assert main([*argv, "--out", folder]) == 1
    assert "is a directory; give the image file to write" in capsys.readouterr().err
    assert main([*argv, "--out", str(tmp_path / "edited.tiff2")]) == 1
    assert "unknown image extension '.tiff2'" in capsys.readouterr().err
    assert os.listdir(folder) == []


def test_closed_stdout_exits_quietly(quiet_build):
    out, _ = quiet_build
    proc = subprocess.Popen([*MCIE, "audit", out], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before anything is written: `mcie audit X | head -0`
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == 141  # 128 + SIGPIPE, as a Unix filter
    assert err == ""  # before: "mcie: run failed: BrokenPipeError: [Errno 32] Broken pipe ..."


# ------------------------------------------------------------------ naming convention


@pytest.mark.parametrize(
    "old,new,dest,value",
    [
        (["annotate", "--in", "t/gen", "--out", "o"], ["annotate", "t/gen", "--out", "o"], "inp", "t/gen"),
        (["shard", "--in", "t/sc", "--out", "o"], ["shard", "t/sc", "--out", "o"], "inp", "t/sc"),
        (["bench", "run", "--bench", "b", "--editor", "oracle", "--out", "r"],
         ["bench", "run", "b", "--editor", "oracle", "--out", "r"], "inp", "b"),
        (["bench", "build", "--from", "out/x", "--out", "b"], ["bench", "build", "out/x", "--out", "b"],
         "inp", "out/x"),
        (["train", "--shards", "s/*.tar", "--out", "r", "--max-steps", "1"],
         ["train", "s/*.tar", "--out", "r", "--max-steps", "1"], "shards", "s/*.tar"),
        (["train", "s/*.tar", "--out", "r", "--max-steps", "1", "--workers", "2"],
         ["train", "s/*.tar", "--out", "r", "--max-steps", "1", "--loader-workers", "2"], "workers", 2),
        (["build", "--out", "o", "--preset", "demo"], ["build", "--out", "o", "--size", "demo"],
         "preset", "demo"),
        (["preview", "b", "--png", "p.png"], ["preview", "b", "--out", "p.png"], "out", "p.png"),
        (["models", "tiny", "d"], ["models", "tiny", "--out", "d"], None, "d"),
    ],
)  # fmt: skip
def test_old_spellings_still_work_with_a_note(old, new, dest, value, capsys):
    a, b = build_parser().parse_args(old), build_parser().parse_args(new)
    note = capsys.readouterr().err
    assert note.startswith("mcie: note: ") and "is deprecated" in note and note.count("\n") == 1
    if dest is None:  # models tiny: DIR was the output; --out is
        assert (a.dir, b.out) == (value, value)
    else:
        assert getattr(a, dest) == getattr(b, dest) == value
    assert not any(k.startswith("_") for k in vars(a))


def test_input_given_twice_or_not_at_all_is_a_usage_error(capsys):
    for argv in (["annotate", "a", "--in", "b", "--out", "o"], ["annotate", "--out", "o"]):
        with pytest.raises(SystemExit) as e:
            build_parser().parse_args(argv)
        assert e.value.code == 1
    err = capsys.readouterr().err
    assert "TABLE given twice ('a' and 'b')" in err
    assert "the following arguments are required: TABLE" in err


def test_ls_shard_calls_its_input_build():
    ls = build_parser()._subparsers._group_actions[0].choices["ls"]
    shard = ls._subparsers._group_actions[0].choices["shard"]
    args = build_parser().parse_args(["ls", "shard", "out/demo", "--out", "out/final"])
    assert (args.inp, args.out) == ("out/demo", "out/final")
    assert shard.format_usage().split()[-1] == "BUILD"


# ------------------------------------------------------------------ progress bars


@pytest.mark.slow
def test_progress_bar_only_on_a_terminal_and_ends_with_a_summary(bench_dir, tmp_path):
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a 100-column terminal
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "100"}
    run = str(tmp_path / "run")
    proc = subprocess.run([*MCIE, "bench", "run", bench_dir, "--editor", "oracle", "--out", run],
                          stdout=subprocess.PIPE, stderr=slave, env=env, timeout=600)  # fmt: skip
    os.close(slave)
    tty = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the terminal's other side is closed and drained
            break
        if not chunk:
            break
        tty += chunk
    os.close(master)
    assert proc.returncode == 0
    text = tty.decode()
    assert "bench run:" in text and re.search(r"\|[ #█▏▎▍▌▋▊▉]*\| ?\d/4", text)  # the bar drew
    # the bar is cleared (\r) and the summary line takes its place
    assert re.search(r"\rbench run: 4 sets in \d+\.\d s, [\d.]+ sets/s\r?\n$", text)
    assert json.loads(proc.stdout)["sets"] == 4  # stdout is what it always was
    assert not re.search(r"bench run: \d/4 sets,", text)  # the bar replaces the plain lines
    quiet = _run(
        "bench", "run", bench_dir, "--editor", "oracle", "--out", str(tmp_path / "q"), "--no-progress"
    )
    assert quiet.returncode == 0 and quiet.stderr == ""


def test_bench_run_into_a_pipe_prints_progress_lines_with_an_eta(bench_dir, tmp_path):
    """`mcie bench run … | cat`: no bar, but plain lines on stderr while it runs — after the
    first set the estimated time in all, then counts and an ETA — before the summary."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    argv = [*MCIE, "bench", "run", bench_dir, "--editor", "oracle", "--out", str(tmp_path / "piped")]
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                          timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stdout
    out = proc.stdout.splitlines()
    assert "\r" not in proc.stdout and "\x1b" not in proc.stdout  # no redraws into a pipe
    num = r"[\d.]+(?:e[+-]\d+)?"
    dur = r"(?:\d+\.\ds|\d+m\d\ds|\d+h\d\dm)"
    first = rf"bench run: 1/4 sets, {num} sets/s, {dur} elapsed, ETA {dur} \(about {dur} in all\)"
    last = rf"bench run: 4/4 sets, {num} sets/s, {dur} elapsed, ETA {dur}"
    assert len(out) == 3 and re.fullmatch(first, out[0]) and re.fullmatch(last, out[1]), out
    assert json.loads(out[2])["sets"] == 4  # the summary comes after the progress lines
    quiet = _run(
        "bench", "run", bench_dir, "--editor", "oracle", "--out", str(tmp_path / "q"), "--no-progress"
    )
    assert quiet.returncode == 0 and quiet.stderr == ""


def test_plain_progress_lines_every_interval_and_at_the_end(monkeypatch):
    """Into a log: a line when ``interval`` has passed (not one per item), and one at the last
    item once any was printed; none for a quick loop."""
    from mcie import progress

    clock = [0.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    log = io.StringIO()
    p = progress.Progress(10, "audit", "shards", stream=log, interval=30)
    for _ in range(10):
        clock[0] += 10  # 10 s a shard: a line after 30 s, 60 s, 90 s, and the last
        p.update()
    p.close()
    assert log.getvalue().splitlines() == [
        "audit: 3/10 shards, 0.1 shards/s, 30.0s elapsed, ETA 1m10s",
        "audit: 6/10 shards, 0.1 shards/s, 1m00s elapsed, ETA 40.0s",
        "audit: 9/10 shards, 0.1 shards/s, 1m30s elapsed, ETA 10.0s",
        "audit: 10/10 shards, 0.1 shards/s, 1m40s elapsed, ETA 0.0s",
    ]
    quick = io.StringIO()
    with progress.Progress(10, "audit", "shards", stream=quick) as p:
        p.update(10)
    assert quick.getvalue() == ""


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_note_says_what_a_loop_waits_on():
    """``note``: a plain line into a log, beside the bar on a terminal, nothing when off."""
    from mcie import progress

    log, tty = io.StringIO(), _Terminal()
    with progress.Progress(5, "ls import p", "tasks", stream=log) as p:
        p.note("Label Studio is writing an export snapshot")
        p.update(5)
    said = log.getvalue().splitlines()
    assert said[0] == "ls import p: Label Studio is writing an export snapshot"
    assert said[1].startswith("ls import p: 5/5 tasks, ") and len(said) == 2  # and the count at the end
    with progress.Progress(5, "ls import p", "tasks", stream=tty) as bar:
        bar.note("waiting on the server")
        bar.update(5)
    assert "waiting on the server" in tty.getvalue()
    progress.configure(False)
    try:
        off = io.StringIO()
        with progress.Progress(5, "ls import p", "tasks", stream=off) as p:
            p.note("waiting")
        assert off.getvalue() == ""
    finally:
        progress.configure(True)


def test_progress_bar_switches():
    from mcie import progress

    tty, pipe = _Terminal(), io.StringIO()
    with progress.Progress(3, "train", "steps", stream=tty) as bar:
        for _ in range(3):
            bar.update(1, loss="0.1234")
    drawn = tty.getvalue()
    assert "train:   0%|" in drawn and "| 0/3 [" in drawn  # the bar (redrawn at most every 0.1 s)
    assert re.fullmatch(r"train: 3 steps in \d+\.\d s, [\d.e+]+ steps/s\n", drawn.split("\r")[-1])
    with progress.Progress(3, "train", "steps", stream=pipe) as bar:
        bar.update(3)
    assert pipe.getvalue() == "" and bar.summary().startswith("train: 3 steps in ")
    progress.configure(False)  # --no-progress
    try:
        off = _Terminal()
        with progress.Progress(3, "train", "steps", stream=off) as bar:
            bar.update(3)
        assert off.getvalue() == "" and not progress.lines()
    finally:
        progress.configure(True)


def test_pipeline_progress_redraws_one_line_on_a_terminal(tmp_path, monkeypatch):
    import time

    from mcie.pipeline.progress import ProgressReporter

    def printed(stream) -> str:
        monkeypatch.setattr(sys, "stderr", stream)
        with ProgressReporter(str(tmp_path / "stats"), 3, 30, "build x", interval=0.02):
            time.sleep(0.2)
        return stream.getvalue()

    tty = printed(_Terminal())
    assert tty.startswith("\r[build x] units 0/3  samples 0/30")
    assert tty.count("\n") == 1 and tty.endswith("\n")  # one line, redrawn with \r
    log = printed(io.StringIO())  # a log file or pipe: one line per interval, as before
    assert log.count("\n") >= 2 and "\r" not in log and log.startswith("[build x] units 0/3")
