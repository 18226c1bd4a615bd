"""``MetricChart``: one metric's line chart (textual-plot) that keeps its series and redraws it itself.

textual-plot 0.10's ``PlotWidget`` clears its datasets in ``on_mount``. A series handed to it between
``mount()`` and that handler (the Run screen mounts a chart and draws its first points in one go) is lost until
the next ``plot()`` call; for a finished run no further points come, so the chart stayed blank (seen on CI's
loaded 2-core machine). This widget owns its series and draws it again once it is mounted.

Imported lazily by the Run screen (textual-plot pulls numpy in; the TUI's start-up does not need it).
"""

from __future__ import annotations

from typing import Any

from textual_hires_canvas import Canvas
from textual_plot import HiResMode, PlotWidget


class MetricChart(PlotWidget):
    """A line chart of one scalar tag: x = training step, y = value."""

    def __init__(self, tag: str, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.tag = tag
        self.border_title = tag
        self.series: tuple[Any, Any] | None = None

    @property
    def points(self) -> int:
        """Number of points in the current series (0 before any)."""
        return 0 if self.series is None else len(self.series[0])

    def line_cells(self) -> list[tuple[int, int]]:
        """(x, y) of the plot canvas cells the line is drawn in (braille glyphs): what is on screen now."""
        canvas = self.query_one("#plot", Canvas)
        w, h = canvas._canvas_size
        return [(x, y) for y in range(h) for x in range(w) if 0x2800 < ord(canvas.get_pixel(x, y)[0]) <= 0x28FF]

    def show(self, xs: Any, ys: Any) -> None:
        """Replace the series (``xs``, ``ys``: 1-D arrays of equal length) and draw it when the widget can."""
        self.series = (xs, ys)
        if self.is_mounted:
            self._draw()

    def _draw(self) -> None:
        self.clear()
        if not self.points:
            self.border_subtitle = ""
            return
        xs, ys = self.series  # type: ignore[misc]
        self.plot(xs, ys, hires_mode=HiResMode.BRAILLE, line_style="green")
        self.border_subtitle = f"{len(xs)} pts · last {ys[-1]:.4g}"

    def on_mount(self) -> None:
        # PlotWidget.on_mount (it runs after this one, in MRO order) clears the datasets: draw after it.
        self.call_after_refresh(self._draw)
