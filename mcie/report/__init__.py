"""Static HTML reports: one self-contained page per build (``mcie report``) and per CIE-Bench
run or comparison (``mcie bench report`` / ``mcie bench compare``, in ``mcie.bench.report``).

* :mod:`mcie.report.overlay` — mask overlays and thumbnails (also used by ``mcie preview``);
* :mod:`mcie.report.charts` — matplotlib charts with axes, counts and titles;
* :mod:`mcie.report.page` — the page: inline CSS/JS, ``data:`` images, the filterable gallery;
* :mod:`mcie.report.dataset` — the build report.
"""
