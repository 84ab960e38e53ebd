"""Label Studio's documented limits, and how ``mcie ls`` keeps within them (one home for the
numbers; importing this module loads no Label Studio code).

- "It's best to keep about 100k tasks / 100k annotations per project for optimal performance"
  (labelstud.io/guide/tasks, "General guidelines for importing data"): ``ls export`` fills
  projects of at most :data:`DEFAULT_MAX_TASKS` tasks (``--max-tasks-per-project``) and puts
  the rest into further projects, the review's parts (:mod:`mcie.annotation.parts`).
- "One POST request is limited at 250K tasks and 200 MB" (the import API's reference): a batch
  holds at most :data:`DEFAULT_BATCH_SIZE` tasks (``--batch-size``) and
  :data:`MAX_REQUEST_BYTES`.
- "Avoid frequent imports ... One import per 30 seconds will work without overloads" (the same
  guide): one request at a time, each as large as the limits above allow, so a 90k review is
  some tens of requests; the server answers each (one transaction) before the next is sent.
- Brush masks are large in a task: each pre-annotated mask is one RLE region per sub-edit
  (at most :data:`mcie.annotation.config.SLOTS`), not one per pixel run, and the request size
  counts them (a 512 px mask is a few KB of RLE).
- A project title has at most :data:`MAX_TITLE` characters (Label Studio's model field).
"""

from __future__ import annotations

#: tasks per project by default (Label Studio's advice above)
DEFAULT_MAX_TASKS = 100_000
#: most tasks in one import request by default
DEFAULT_BATCH_SIZE = 1000
#: most bytes in one import request: a third of Label Studio's 200 MB, so a server behind a
#: proxy with a smaller body limit still takes it, and mcie holds at most this much per batch
MAX_REQUEST_BYTES = 64 * 2**20
#: Label Studio's limit on a project title's length
MAX_TITLE = 50
