"""``--runner DataflowRunner``: checked before anything is submitted, inspectable without
submitting.

* :func:`check_flags` (every Dataflow run, dry or not, no network): project, region and a
  ``gs://`` temp location are given and well formed, workers get ``mcie`` somehow (a worker
  image, or a package / requirements file Beam stages), local files named by staging flags
  exist. Without this a bad temp location made Beam try to create a default bucket with
  default credentials, retrying for minutes while the progress line said ``units 0/2 … ETA ?``.
* :func:`plan` (``--dry-run``): builds the same Beam graph, pickles every step as a submit
  would, and reports the steps (with resource hints), what Beam would stage and the worker
  image; nothing is written, nothing is contacted. Beam's own ``--dry_run=True`` is not used:
  it needs ``apache-beam[gcp]`` and, for a requirements file, runs ``pip download``.
* :func:`preflight` (a real submit): Application Default Credentials exist, then every bucket
  the run writes (``--out`` when it is ``gs://``, ``--temp_location``, ``--staging_location``)
  exists and these credentials can reach it, then the Dataflow client library is installed.
  Each failure exits 1 with the fix, within seconds (one try each, short timeouts).
"""

from __future__ import annotations

import logging
import os
import re
import sys
from typing import Any

from mcie import storage
from mcie.exitcodes import ServiceError, UsageError

#: flags every Dataflow run needs
REQUIRED = ("--project", "--region", "--temp_location")
#: flags that get ``mcie`` (and a backend's dependencies) onto the workers
PACKAGING = (
    "--sdk_container_image",
    "--setup_file",
    "--extra_package",
    "--extra_packages",
    "--requirements_file",
)
#: Google's rules for a bucket name (the part of ``gs://NAME/...`` before the first slash)
BUCKET_NAME = re.compile(r"^[a-z0-9][-_a-z0-9.]{1,61}[a-z0-9]$")
#: the credentials' scope Dataflow and GCS need
SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
#: seconds for each bucket lookup (no retries: a preflight must answer within seconds)
TIMEOUT_S = 10
#: what to run when credentials are missing
CREDENTIALS_FIX = (
    "run `gcloud auth application-default login`, or set GOOGLE_APPLICATION_CREDENTIALS to a "
    "service-account key file"
)


def _flags(beam_args: tuple[str, ...]) -> dict[str, list[str]]:
    """``--name=value`` / ``--name value`` flags by name (a name may repeat)."""
    out: dict[str, list[str]] = {}
    args = list(beam_args)
    while args:
        arg = args.pop(0)
        if not arg.startswith("--"):
            continue
        name, eq, value = arg.partition("=")
        if not eq and args and not args[0].startswith("--"):
            value = args.pop(0)
        out.setdefault(name, []).append(value)
    return out


def _bucket(url: str, flag: str) -> str:
    if not url.startswith("gs://"):
        raise UsageError(f"{flag} must be a gs:// URL on Dataflow, got {url!r}")
    name = url[5:].split("/", 1)[0]
    if not BUCKET_NAME.match(name):
        raise UsageError(f"{flag} {url!r}: {name!r} is not a valid bucket name (3-63 of a-z 0-9 - _ .)")
    return name


def check_flags(run, needs_image: bool = False) -> None:
    """Fail early (UsageError, no network) on Dataflow flags a run cannot go far with;
    ``needs_image``: the backend's dependencies (model libraries, weights) come only in a
    worker image (``--sdk_container_image``)."""
    flags = _flags(run.beam_args)
    missing = [f for f in REQUIRED if f not in flags]
    if needs_image and "--sdk_container_image" not in flags:
        missing.append("--sdk_container_image")
    if missing:
        raise UsageError(
            "--runner DataflowRunner needs " + ", ".join(f"--beam-arg={f}=..." for f in missing)
            + " (see the README section 'Real models on Dataflow')"
        )  # fmt: skip
    if run.workers != 1:
        raise UsageError("--workers is for the local runner; on Dataflow use --beam-arg=--max_num_workers=N")
    if not any(f in flags for f in PACKAGING):
        raise UsageError(
            "Dataflow workers need mcie: give --beam-arg=--sdk_container_image=IMAGE (an image with "
            "mcie installed) or --beam-arg=--extra_package=dist/mcie-VERSION-py3-none-any.whl "
            "(from `python -m build --wheel`)"
        )
    _bucket(flags["--temp_location"][-1], "--temp_location")
    for url in flags.get("--staging_location", []):
        _bucket(url, "--staging_location")
    for flag in ("--setup_file", "--requirements_file", "--extra_package", "--extra_packages"):
        for path in flags.get(flag, []):
            if not storage.is_remote(path) and not os.path.isfile(path):
                raise UsageError(f"{flag} {path!r} does not exist")


def default_image(options) -> str:
    """The worker image Dataflow uses without ``--sdk_container_image``: Beam's SDK image for
    this Python and Beam version (as ``apiclient.get_container_image_from_options`` names it)."""
    from apache_beam import version as beam_version
    from apache_beam.options.pipeline_options import WorkerOptions
    from apache_beam.runners.dataflow.internal import names
    from packaging.version import parse

    repo = (options.view_as(WorkerOptions).dataflow_container_base_repository or "").strip().rstrip("/")
    repo = repo or names.DATAFLOW_CONTAINER_IMAGE_REPOSITORY
    tag = parse(beam_version.__version__).base_version
    return f"{repo}/beam_python{sys.version_info[0]}.{sys.version_info[1]}_sdk:{tag}"


def _validate_options(options) -> None:
    """Beam's own checks of the Dataflow options (project id, job name, regions...), without
    the network: its dry-run mode skips the bucket policy lookups."""
    from apache_beam.options.pipeline_options import TestOptions
    from apache_beam.options.pipeline_options_validator import PipelineOptionsValidator
    from apache_beam.runners.dataflow.dataflow_runner import DataflowRunner

    test = options.view_as(TestOptions)
    before, test.dry_run = test.dry_run, True
    try:
        errors = PipelineOptionsValidator(options, DataflowRunner()).validate()
    finally:
        test.dry_run = before
    if errors:
        raise UsageError("Dataflow options: " + "; ".join(" ".join(e.split()) for e in errors))


def _hints(applied) -> dict[str, str]:
    hints = {}
    for urn, value in applied.transform.get_resource_hints().items():
        name = urn.split(":")[2] if urn.count(":") >= 3 else urn
        hints[name] = value.decode(errors="replace") if isinstance(value, bytes) else str(value)
    return hints


def _step(applied) -> dict[str, Any]:
    import apache_beam as beam

    t = applied.transform
    step: dict[str, Any] = {"name": applied.full_label, "transform": type(t).__name__}
    if isinstance(t, beam.ParDo):
        step["fn"] = type(t.fn).__name__
    if isinstance(t, beam.Create):
        step["elements"] = len(t.values)
    hints = _hints(applied)
    if hints:
        step["resource_hints"] = hints
    return step


def _staged(options) -> dict[str, Any]:
    from apache_beam.options.pipeline_options import SetupOptions

    setup = options.view_as(SetupOptions)
    staged: dict[str, Any] = {}
    if setup.requirements_file:
        with open(setup.requirements_file) as fh:
            reqs = [ln.strip() for ln in fh if ln.strip() and not ln.lstrip().startswith("#")]
        staged["requirements_file"] = {"path": setup.requirements_file, "requirements": reqs}
    if setup.setup_file:
        staged["setup_file"] = setup.setup_file
    if setup.extra_packages:
        staged["extra_packages"] = list(setup.extra_packages)
    staged["sdk_location"] = setup.sdk_location  # "container": the SDK inside the worker image
    return staged


def plan(command: str, units: list, run, attach) -> dict[str, Any]:
    """The Dataflow job ``command`` would submit, built and serialised here but not sent:
    its steps, staged files and worker image. Contacts nothing, writes nothing."""
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions, WorkerOptions
    from apache_beam.runners.direct.direct_runner import BundleBasedDirectRunner

    check_flags(run)
    options = PipelineOptions(run.beam_flags())
    _validate_options(options)
    # a local runner object only holds the graph: no Dataflow client is created
    p = beam.Pipeline(runner=BundleBasedDirectRunner(), options=options)
    attach(p, units)
    p.to_runner_api()  # pickles every DoFn with its options, as a submit would
    image = options.view_as(WorkerOptions).sdk_container_image
    return {
        "dry_run": True,
        "command": command,
        "runner": "DataflowRunner",
        "units": len(units),
        "items": sum(u.stop - u.start for u in units),
        "steps": [_step(a) for a in p.transforms_stack[0].parts],
        "staged": _staged(options),
        "container_image": image or default_image(options),
        "container_image_is_default": not image,
        "beam_flags": run.beam_flags(),
    }


def format_plan(plan_: dict[str, Any]) -> str:
    """The dry run's report for the terminal."""
    lines = [
        f"dry run: `mcie {plan_['command']}` on DataflowRunner, {plan_['units']} units of work "
        f"({plan_['items']} items); nothing was submitted",
        "steps:",
    ]
    for s in plan_["steps"]:
        extra = f" {s['fn']}" if "fn" in s else f" ({s['elements']} elements)" if "elements" in s else ""
        hints = ", ".join(f"{k}={v}" for k, v in s.get("resource_hints", {}).items())
        lines.append(f"  {s['name']}: {s['transform']}{extra}" + (f"  [{hints}]" if hints else ""))
    lines.append("staged:")
    for k, v in plan_["staged"].items():
        if k == "requirements_file":
            v = f"{v['path']} ({', '.join(v['requirements']) or 'empty'})"
        lines.append(f"  {k}: {v}")
    default = (
        " (Beam's default; has no mcie unless staged above)" if plan_["container_image_is_default"] else ""
    )
    lines.append(f"container image: {plan_['container_image']}{default}")
    lines.append("beam flags: " + " ".join(plan_["beam_flags"]))
    return "\n".join(lines)


def preflight(run, out: str) -> None:
    """Before a real submit: credentials, the run's buckets, the Dataflow client library.
    UsageError (exit 1) naming the fix; ServiceError (exit 3) when Google Cloud does not
    answer."""
    import google.auth
    from apache_beam.options.pipeline_options import PipelineOptions
    from google.auth.exceptions import DefaultCredentialsError

    check_flags(run)
    _validate_options(PipelineOptions(run.beam_flags()))
    quiet = logging.getLogger("google.auth")  # it warns of each place it looked: our line says it all
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        credentials, _ = google.auth.default(scopes=list(SCOPES))
    except DefaultCredentialsError as exc:
        raise UsageError(f"no Google Cloud credentials found for DataflowRunner: {CREDENTIALS_FIX}") from exc
    finally:
        quiet.setLevel(level)
    flags = _flags(run.beam_args)
    project, region = flags["--project"][-1], flags["--region"][-1]
    buckets = {}
    for flag in ("--temp_location", "--staging_location"):
        for url in flags.get(flag, []):
            buckets.setdefault(_bucket(url, flag), flag)
    if storage.scheme(out) == "gs":
        buckets.setdefault(_bucket(out, "--out"), "--out")
    for name, flag in buckets.items():
        _check_bucket(name, flag, project, region, credentials)
    try:
        from apache_beam.runners.dataflow.internal import apiclient  # noqa: F401
    except ImportError as exc:
        raise UsageError(
            "DataflowRunner needs the Dataflow client library: pip install 'apache-beam[gcp]' "
            f"(the import failed: {exc})"
        ) from exc


def _check_bucket(name: str, flag: str, project: str, region: str, credentials) -> None:
    from google.api_core import exceptions
    from google.cloud import storage as gcs

    if os.environ.get("STORAGE_EMULATOR_HOST"):
        # an emulator takes no credentials (google-cloud-storage's own rule for this variable)
        from google.auth.credentials import AnonymousCredentials

        credentials = AnonymousCredentials()
    client = gcs.Client(project=project, credentials=credentials)
    who = getattr(credentials, "service_account_email", None) or "these credentials"
    try:
        bucket = client.lookup_bucket(name, timeout=TIMEOUT_S, retry=None)
    except exceptions.Forbidden as exc:
        raise UsageError(
            f"{who} may not read gs://{name} ({flag}): grant them roles/storage.objectAdmin on it, "
            f"or use a bucket of project {project}"
        ) from exc
    except exceptions.GoogleAPICallError as exc:
        raise ServiceError(f"Google Cloud Storage refused the lookup of gs://{name} ({flag}): {exc}") from exc
    except Exception as exc:  # a transport error: DNS, refused, timed out, token refresh
        raise ServiceError(
            f"could not reach Google Cloud Storage to check gs://{name} ({flag}) within {TIMEOUT_S} s: "
            f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
        ) from exc
    if bucket is None:
        raise UsageError(
            f"bucket gs://{name} ({flag}) does not exist: create it with `gcloud storage buckets "
            f"create gs://{name} --project={project} --location={region}`"
        )
