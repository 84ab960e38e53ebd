"""Reviewers' annotations written in bulk through Label Studio's own models (run by
``bench_ls.py --annotate orm`` with the Label Studio venv's Python, beside a server that is
idle meanwhile).

    .venv-ls/bin/python benchmarks/ls_orm_annotate.py ANNOTATIONS.json

``ANNOTATIONS.json``: ``{task id: [{"result": [...], "completed_by": user id}, ...]}``. The
annotations land on the exported tasks themselves, as reviewers' submissions do, which the
REST API can only do one POST at a time (~10 per second here: half an hour for 10k tasks).
``bulk_create`` skips the per-save signals, so each task's ``is_labeled`` and annotation count
are set here as a submission would set them. The environment is the server's own (its data
dir, settings, Sentry off).
"""

import json
import os
import sys

import label_studio

sys.path.insert(0, os.path.dirname(label_studio.__file__))  # as `label-studio start` does
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "label_studio.core.settings.label_studio")

import django  # noqa: E402

django.setup()

from django.db import transaction  # noqa: E402
from tasks.models import Annotation, Task  # noqa: E402


def main() -> None:
    with open(sys.argv[1]) as fh:
        wanted = {int(k): v for k, v in json.load(fh).items()}
    tasks = Task.objects.in_bulk(list(wanted))
    made = []
    for tid, anns in wanted.items():
        task = tasks[tid]
        for a in anns:
            made.append(Annotation(task=task, project_id=task.project_id, result=a["result"],
                                   completed_by_id=a["completed_by"], was_cancelled=False))  # fmt: skip
    with transaction.atomic():
        Annotation.objects.bulk_create(made, batch_size=500)
        for tid, anns in wanted.items():
            Task.objects.filter(id=tid).update(is_labeled=True, total_annotations=len(anns))
    print(json.dumps({"annotations": len(made), "tasks": len(wanted)}))


if __name__ == "__main__":
    main()
