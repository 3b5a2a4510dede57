"""`lorawb sweep report NAME --out FILE.png`: the sweep's answer as a picture to share.

Drawn with matplotlib (Agg, no display needed): one panel per score (identity − leak, identity,
leak, prompt following) against the checkpoint step, a line per setting at the best candidate's
weight, the seed-to-seed spread as error bars (the settings side by side, a little apart, so
equal values stay visible); the verdict above and the top of the ranking below.
"""

from __future__ import annotations

import io
import textwrap
from pathlib import Path

from lorawb.core.fsutil import atomic_write_bytes
from lorawb.sweep.report import NAMES, SweepReport

PANELS = ("net", "identity", "leak", "prompt_following")
MARKERS = "osD^v<>p*h"


def render(report: SweepReport, out: Path, top: int = 6) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    weight = report.best.weight if report.best else None
    panels = [m for m in PANELS if report.series(m, weight)] or ["net"]
    fig = plt.figure(figsize=(3.3 * len(panels) + 0.6, 7.4), dpi=110)
    grid = fig.add_gridspec(2, len(panels), height_ratios=(3, 2), top=0.76, bottom=0.02, hspace=0.4, wspace=0.32)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    labels = [e.label for e in report.entries]
    for i, metric in enumerate(panels):
        ax = fig.add_subplot(grid[0, i])
        series = report.series(metric, weight)
        steps_all = sorted({p[0] for pts in series.values() for p in pts})
        width = (steps_all[-1] - steps_all[0]) if len(steps_all) > 1 else 1.0
        for k, (label, points) in enumerate(series.items()):
            n = labels.index(label) if label in labels else k
            shift = (k - (len(series) - 1) / 2) * 0.015 * width
            steps, means, sds = zip(*points, strict=True)
            ax.errorbar(
                [s + shift for s in steps],
                means,
                yerr=sds,
                marker=MARKERS[n % len(MARKERS)],
                capsize=3,
                label=label,
                color=colours[n % len(colours)],
            )
        ax.set_title(NAMES[metric] + (f" (weight {weight:g})" if weight is not None else ""), fontsize=10)
        ax.set_xlabel("checkpoint step")
        ax.set_xticks(steps_all)
        ax.grid(alpha=0.3)
        if i == 0:
            ax.legend(fontsize=8)
    title = f"sweep {report.name}" + (f" · scores measured by the {report.scorer}" if report.scorer else "")
    title += " · error bars: seed-to-seed spread"
    fig.text(0.015, 0.975, title, fontsize=12, va="top")
    verdict = "\n".join(textwrap.fill(line, 150) for line in report.verdict().splitlines())
    fig.text(0.015, 0.935, verdict, fontsize=9, va="top", family="monospace")
    table = fig.add_subplot(grid[1, :])
    table.axis("off")
    rows = [
        [
            str(n),
            c.label,
            c.checkpoint,
            f"{c.weight:g}",
            _f(c.identity),
            _f(c.leak),
            _f(c.prompt_following),
            _f(c.net, 3) + (f" ± {c.spread:.3f}" if c.spread is not None else ""),
        ]
        for n, c in enumerate(report.candidates[:top], 1)
    ]
    if rows:
        cols = ["#", "setting", "checkpoint", "weight", "identity", "leak", "prompt", "identity − leak ± seeds"]
        widths = [0.04, 0.3, 0.12, 0.08, 0.09, 0.08, 0.08, 0.21]
        t = table.table(cellText=rows, colLabels=cols, colWidths=widths, loc="upper center", cellLoc="left")
        t.auto_set_font_size(False)
        t.set_fontsize(9)
        t.scale(1, 1.35)
    else:
        table.text(0.0, 0.9, report.reason, fontsize=9, va="top")
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic_write_bytes(out, buf.getvalue())
    return out


def _f(x: float | None, p: int = 2) -> str:
    return "-" if x is None else f"{x:.{p}f}"
