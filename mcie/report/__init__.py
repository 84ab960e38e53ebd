"""Static HTML reports: one self-contained page per build (``mcie report``) and per CIE-Bench
run or comparison (``mcie bench report`` / ``mcie bench compare``, in ``mcie.bench.report``).

* :mod:`mcie.report.overlay` — how a mask is drawn: a ring outside its region, or a tint;
* :mod:`mcie.report.sheet` — contact sheets (PNG: ``mcie preview``, a bench run's ``contact.png``);
* :mod:`mcie.report.gallery` — the clean pictures and mask layers a page's gallery embeds;
* :mod:`mcie.report.charts` — matplotlib charts with axes, counts and titles;
* :mod:`mcie.report.page` — the page: inline CSS/JS, ``data:`` images, the filterable gallery;
* :mod:`mcie.report.dataset` — the build report.
"""
