"""Line charts for the Train tab (loss, learning rate, run overlay), drawn by plotext.

A chart is handed already-downsampled series (lorawb.train.monitor does that off the
event loop) and only rebuilds its plot when it gets new data or the theme changes.
Series colours come from theme variables ($loss, $loss-smooth, $val-loss, $lr...).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from textual.color import Color
from textual_plotext import PlotextPlot

FALLBACK_COLOURS = {"loss": "#5fafff", "loss-smooth": "#ffaf5f", "val-loss": "#ff87d7", "lr": "#af87ff"}


@dataclass(frozen=True)
class Line:
    label: str
    xs: Sequence[float]
    ys: Sequence[float]
    colour: str  # a theme variable name ("loss") or a colour ("#ff0000")


class SeriesChart(PlotextPlot):
    """A plotext line chart of named series; ``set_lines`` replaces them and redraws once."""

    DEFAULT_CSS = """
    SeriesChart { width: 1fr; height: 1fr; min-height: 5; }
    """

    def __init__(
        self, title: str = "", *, empty: str = "no data yet", y_format: str = "{:.3g}", id: str | None = None
    ) -> None:
        super().__init__(id=id)
        self.title = title
        self.empty = empty
        self.y_format = y_format
        self.lines: tuple[Line, ...] = ()
        self.ylog = False

    def on_mount(self) -> None:
        super().on_mount()
        self.app.theme_changed_signal.subscribe(self, lambda _theme: self._plot_lines())
        self._plot_lines()

    def set_lines(self, lines: Sequence[Line], *, title: str | None = None) -> None:
        if title is not None:
            self.title = title
        self.lines = tuple(lines)
        self._plot_lines()

    def _colour(self, name: str) -> tuple[int, int, int]:
        value = name if name.startswith("#") else self.app.theme_variables.get(name, FALLBACK_COLOURS.get(name))
        try:
            return Color.parse(value or "white").rgb
        except Exception:  # a theme with a bad colour must not break the chart
            return (200, 200, 200)

    def _plot_lines(self) -> None:
        if not self.is_mounted:
            return
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        drawn = [ln for ln in self.lines if len(ln.xs)]
        plt.title(self.title if drawn else f"{self.title}: {self.empty}" if self.title else self.empty)
        for ln in drawn:
            plt.plot(list(ln.xs), list(ln.ys), label=ln.label, color=self._colour(ln.colour), marker="braille")
        if drawn:
            plt.yscale("log" if self.ylog else "linear")
            xs = [x for ln in drawn for x in (min(ln.xs), max(ln.xs))]
            ys = [y for ln in drawn for y in (min(ln.ys), max(ln.ys))]
            # Steps are whole numbers; plotext's own ticks would say 38.2.
            xt = _ticks(min(xs), max(xs), 5, whole=True)
            plt.xticks(xt, [str(int(x)) for x in xt])
            # As many y labels as the height holds (a row apart): more would overlap, and which one
            # plotext then shows is left to chance.
            rows = self.size.height - 4 if self.size.height else 10
            yt = _ticks(min(ys), max(ys), max(2, min(5, rows // 2 + 1)))
            plt.yticks(yt, [self.y_format.format(y) for y in yt])
        self.refresh()

    def on_resize(self) -> None:
        self._plot_lines()


def _ticks(lo: float, hi: float, n: int, whole: bool = False) -> list[float]:
    if hi <= lo:
        return [lo]
    step = (hi - lo) / (n - 1)
    ticks = [lo + i * step for i in range(n)]
    if whole:
        ticks = sorted({float(round(t)) for t in ticks})
    return ticks
