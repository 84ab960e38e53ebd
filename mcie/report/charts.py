"""Charts for the HTML reports (matplotlib, Agg backend, PNG bytes).

Every chart has labelled axes, the count behind each bar or histogram, and a title naming what
(and, for bench charts, which editor) it shows. A bar of height 0 still shows its value label,
so a run where nothing was executed gives a readable chart, not a blank one.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np

#: colours per status, the same in every chart and in the page's CSS badges
STATUS_COLOURS = {
    "accepted": "#2e7d32",
    "rejected": "#c62828",
    "pending": "#f9a825",
    "failed": "#616161",
    "candidate": "#1565c0",
    # CIE-Bench sets
    "all executed": "#2e7d32",
    "not all executed": "#c62828",
}
#: colours of editors in comparison charts (matplotlib's tab10, colour-blind friendlier order)
SERIES = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")


def _pyplot():
    """matplotlib's pyplot on the Agg backend (no display, no window, no network)."""
    try:
        import matplotlib
    except ImportError as exc:  # pragma: no cover - matplotlib is a core dependency
        raise ImportError("the HTML reports need matplotlib: pip install 'matplotlib>=3.7'") from exc
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 9, "axes.titlesize": 10, "svg.hashsalt": "mcie"})
    return plt


def plain(text: object) -> str:
    """``text`` as literal chart text: a ``$`` in an editor name or a path would otherwise start
    matplotlib's math mode (and an invalid formula raises)."""
    return str(text).replace("$", r"\$")


def _png(fig) -> bytes:
    buf = io.BytesIO()
    # no date or software stamp: the same data gives the same bytes
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight", metadata={"Software": None})
    _pyplot().close(fig)
    return buf.getvalue()


def hist_range(lo: float, hi: float) -> tuple[float, float]:
    """The x range of a histogram of values in ``[lo, hi]``. A degenerate range (every value
    the same, or equal to a few parts in a million, e.g. a PSNR of 100 dB on every unchanged
    background) is widened around its centre to a readable span — 1% of the value, at least
    0.05 — so the axis shows a few plain ticks instead of matplotlib's offset label
    (``1e-6+1.00000001e2``) over the axis title."""
    centre, span = (lo + hi) / 2, hi - lo
    if span > 1e-6 * max(1.0, abs(centre)):
        return lo, hi
    half = max(0.05, 0.01 * abs(centre))
    return centre - half, centre + half


def hist_panel(ax, label: str, groups: dict[str, Sequence[float]], bins: int = 20) -> None:
    """One panel of :func:`histograms` on ``ax``: groups stacked in their status colour on a
    log count axis, the count per group in the legend, plain tick labels (no offset)."""
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    data = {g: np.asarray([v for v in vals if v is not None], float) for g, vals in groups.items()}
    data = {g: v[np.isfinite(v)] for g, v in data.items()}
    data = {g: v for g, v in data.items() if v.size}
    if not data:
        ax.text(0.5, 0.5, "no values", ha="center", va="center", transform=ax.transAxes)
    else:
        lo, hi = hist_range(
            min(float(v.min()) for v in data.values()), max(float(v.max()) for v in data.values())
        )
        ax.hist(
            list(data.values()),
            bins=np.linspace(lo, hi, bins + 1),
            stacked=True,
            color=[STATUS_COLOURS.get(g, "#1565c0") for g in data],
            label=[plain(f"{g} (n={v.size})") for g, v in data.items()],
        )
        ax.set_xlim(lo, hi)
        ax.legend(fontsize=7, frameon=False)
    ax.set_title(plain(label))
    ax.locator_params(axis="x", nbins=5)  # fewer ticks: values like 0.9975 stay legible
    fmt = ScalarFormatter(useOffset=False)
    fmt.set_scientific(False)
    ax.xaxis.set_major_formatter(fmt)
    ax.set_xlabel(plain(label))
    # log counts: most candidates sit at a perfect score, the few that do not are the story
    ax.set_yscale("log")
    ax.set_ylim(bottom=0.7)  # 10⁰ always on the axis, so the unlabelled minor ticks never stand alone
    ax.yaxis.set_minor_formatter(NullFormatter())  # "4×10¹ 3×10¹ …" crowd a short axis
    ax.set_ylabel("count (log)")


def histograms(
    panels: Sequence[tuple[str, dict[str, Sequence[float]]]],
    title: str,
    bins: int = 20,
    columns: int = 3,
) -> bytes:
    """Small multiples: one histogram per ``(metric label, {group: values})`` panel
    (:func:`hist_panel`)."""
    plt = _pyplot()
    rows = (len(panels) + columns - 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(3.4 * columns, 2.5 * rows), squeeze=False)
    for ax, (label, groups) in zip(axes.flat, panels, strict=False):
        hist_panel(ax, label, groups, bins)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    fig.suptitle(plain(title))
    fig.tight_layout()
    return _png(fig)


def bars(
    series: dict[str, dict[str, float | None]],
    title: str,
    ylabel: str,
    xlabel: str,
    counts: dict[str, int] | None = None,
    errors: dict[str, dict[str, tuple[float, float]]] | None = None,
    ylim: tuple[float, float] | None = (0.0, 1.0),
) -> bytes:
    """Grouped bars: ``series`` maps a series name (an editor, a status) to ``{category:
    value}``. Each bar is labelled with its value (``n/a`` for None: drawn as no bar, never
    as 0); ``counts`` adds ``n=…`` under each category; ``errors`` maps series → category →
    (low, high) confidence bounds drawn as error bars."""
    plt = _pyplot()
    cats = list(dict.fromkeys(c for s in series.values() for c in s))
    n = max(1, len(series))
    width = 0.8 / n
    fig, ax = plt.subplots(figsize=(max(4.0, 0.9 + len(cats) * (0.45 + 0.32 * n)), 3.2))
    x = np.arange(len(cats))
    for i, (name, vals) in enumerate(series.items()):
        ys = [vals.get(c) for c in cats]
        pos = x - 0.4 + width * (i + 0.5)
        heights = [0.0 if y is None else float(y) for y in ys]
        kw = {}
        if errors and name in errors:
            lo = [heights[j] - errors[name].get(c, (heights[j], heights[j]))[0] for j, c in enumerate(cats)]
            hi = [errors[name].get(c, (heights[j], heights[j]))[1] - heights[j] for j, c in enumerate(cats)]
            kw = {"yerr": [lo, hi], "capsize": 2, "ecolor": "#333333"}
        ax.bar(pos, heights, width * 0.92, label=plain(name), color=SERIES[i % len(SERIES)], **kw)
        for p, y, c in zip(pos, ys, cats, strict=True):
            text = "n/a" if y is None else f"{y:.2f}"
            top = 0.0 if y is None else float(y)
            if errors and name in errors and c in errors[name]:
                top = max(top, errors[name][c][1])  # above the error bar, not through it
            ax.annotate(text, (p, top), xytext=(0, 2), textcoords="offset points",
                        ha="center", va="bottom", fontsize=7)  # fmt: skip
    long = sum(len(str(c)) for c in cats) > 6 * len(cats) + 8  # long names overlap when flat
    sep = " " if long else "\n"
    labels = [plain(f"{c}{sep}(n={counts[c]})" if counts and c in counts else c) for c in cats]
    ax.set_xticks(x, labels, rotation=25 if long else 0, ha="right" if long else "center")
    ax.set_xlabel(plain(xlabel))
    ax.set_ylabel(plain(ylabel))
    if ylim:
        ax.set_ylim(ylim[0], ylim[1] * 1.12)  # room for the value labels above a bar of 1.0
    ax.set_title(plain(title))
    if len(series) > 1:
        ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return _png(fig)


def count_bars(
    counts: dict[str, int], title: str, xlabel: str, colours: dict[str, str] | None = None
) -> bytes:
    """Horizontal bars of counts (reason codes, statuses), each labelled with its count."""
    plt = _pyplot()
    names = list(counts)
    fig, ax = plt.subplots(figsize=(6.0, 0.9 + 0.3 * max(1, len(names))))
    y = np.arange(len(names))
    ax.barh(y, [counts[k] for k in names], color=[(colours or {}).get(k, "#1565c0") for k in names])
    for yi, k in zip(y, names, strict=True):
        ax.annotate(str(counts[k]), (counts[k], yi), xytext=(3, 0), textcoords="offset points",
                    va="center", fontsize=8)  # fmt: skip
    ax.set_yticks(y, [plain(n) for n in names])
    ax.invert_yaxis()
    ax.set_xlabel(plain(xlabel))
    ax.set_title(plain(title))
    ax.set_xlim(0, max([1, *counts.values()]) * 1.15)
    fig.tight_layout()
    return _png(fig)
