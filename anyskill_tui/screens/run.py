"""The Run screen: live charts of a run's metrics, its log tail, resolved config and checkpoints.

Every ``app.poll_s`` a thread worker reads what is new: scalars from the event files (``MetricsTail``, offset
based), lines of ``train.log`` (offset based), the Run row and its checkpoints. The charts (textual-plot)
redraw only when points arrived, from series downsampled to about twice the chart's width. Which tags are
charted is chosen in the tag list; the defaults depend on the run's kind (skills: CLIP similarity, style
reward, episode length, samples/s; LLC: discriminator reward, fall rate; else the first few tags).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import (
    DataTable,
    Footer,
    Header,
    Log,
    SelectionList,
    Static,
    TabbedContent,
    TabPane,
)

from anyskill_tui.errors import UserError
from anyskill_tui.screens.common import ConfirmModal, app_of, error_text, fill_table
from anyskill_tui.screens.runs import do_resume, do_stop
from anyskill_tui.tui_services import (
    LogTail,
    RunMetrics,
    RunRow,
    clip_score,
    default_tags,
    fmt_duration,
    fmt_score,
    run_dir_of,
    run_row,
    to_yaml,
)

TABS = ("charts", "log", "config", "checkpoints")


def _chart_id(tag: str) -> str:
    return "chart-" + re.sub(r"[^A-Za-z0-9_-]", "_", tag)


@dataclass
class RunUpdate:
    run: Any
    row: RunRow
    ckpts: list[Any]
    lines: list[str]
    new_points: bool
    tags: list[str]
    metrics_error: str = ""
    series: dict[str, tuple[Any, Any]] = field(default_factory=dict)


class RunScreen(Screen[None]):
    """One run, live."""

    BINDINGS = [
        Binding("escape,backspace", "app.pop_screen", "Back", id="run.back"),
        Binding("c", "tab('charts')", "Charts", id="run.charts"),
        Binding("l", "tab('log')", "Log", id="run.log"),
        Binding("o", "tab('config')", "Config", id="run.config"),
        Binding("k", "tab('checkpoints')", "Checkpoints", id="run.checkpoints"),
        Binding("x", "stop", "Stop", id="run.stop"),
        Binding("u", "resume", "Resume", id="run.resume"),
        Binding("r", "replay", "Replay", id="run.replay"),
    ]

    def __init__(self, run_id: int, tab: str = "charts") -> None:
        super().__init__()
        self.run_id = run_id
        self.sub_title = f"run {run_id}"
        self.initial_tab = tab if tab in TABS else "charts"
        self.metrics: RunMetrics | None = None
        self.log_tail: LogTail | None = None
        self.row: RunRow | None = None
        self.config_shown = False
        self.known_tags: list[str] = []
        self.selected: list[str] = []
        self.polls = 0

    @property
    def chart_points(self) -> dict[str, int]:
        """Points in each charted tag's series, by tag."""
        from anyskill_tui.screens.metric_chart import MetricChart

        return {c.tag: c.points for c in self.query(MetricChart)}

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(f"run {self.run_id}: loading…", id="run-summary")
        with TabbedContent(initial=self.initial_tab, id="run-tabs"):
            with TabPane("Charts", id="charts"), Horizontal(id="charts-box"):
                yield SelectionList[str](id="tags")
                with VerticalScroll(id="chart-list"):
                    yield Static("waiting for metrics…", id="charts-empty")
            with TabPane("Log", id="log"):
                yield Log(id="run-log", max_lines=2000, auto_scroll=True)
            with TabPane("Config", id="config"), VerticalScroll():
                yield Static("", id="run-config")
            with TabPane("Checkpoints", id="checkpoints"):
                yield DataTable(id="run-ckpts", cursor_type="row")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#run-ckpts", DataTable).add_columns("step", "CLIP", "metrics", "path")
        self.query_one("#tags", SelectionList).border_title = "metrics"
        self.poll()
        self.set_interval(app_of(self).poll_s, self.poll)

    def poll(self) -> None:
        self._poll()

    @work(thread=True, exclusive=True, group="run-poll", exit_on_error=False)
    def _poll(self) -> None:
        app = app_of(self)
        try:
            lib = app.library()
            run = lib.get_run(self.run_id)
            run_dir = run_dir_of(app.workspace, run)
            if self.metrics is None:
                self.metrics = RunMetrics(run_dir)
                self.log_tail = LogTail(run_dir / "train.log")
            assert self.log_tail is not None
            new_points, metrics_error = False, ""
            try:
                new_points = self.metrics.poll()
            except UserError as exc:
                metrics_error = exc.message
            lines = self.log_tail.poll()
            ckpts = lib.list_checkpoints(self.run_id)
            texts = {}
            if run.skill_id is not None:
                sk = lib.find_skill(run.skill_id)
                if sk is not None:
                    texts[run.skill_id] = sk.text
            row = run_row(run, app.workspace, texts, app.now())
        except Exception as exc:
            self.app.call_from_thread(self._error, error_text(exc))
            return
        upd = RunUpdate(run, row, ckpts, lines, new_points, self.metrics.tags(), metrics_error)
        if new_points or self.polls == 0:
            for tag in self.metrics.tags():
                upd.series[tag] = self.metrics.xy(tag, self._max_points())
        self.polls += 1
        self.app.call_from_thread(self._apply, upd)

    def _max_points(self) -> int:
        try:
            w = self.query_one("#chart-list", VerticalScroll).size.width
        except Exception:
            w = 0
        return max(160, 2 * w)

    def _error(self, message: str) -> None:
        self.query_one("#run-summary", Static).update(f"[red]{message}[/]")

    def _apply(self, u: RunUpdate) -> None:
        r = u.row
        self.row = r
        prog = "—" if r.progress is None else f"{100 * r.progress:.1f}%"
        self.query_one("#run-summary", Static).update(
            f"[b]#{r.id}[/b] {r.kind} on {r.engine}  ·  [b]{r.status}[/b]  ·  {prog}  ·  "
            f"elapsed {fmt_duration(r.elapsed_s)}  ·  ETA {fmt_duration(r.eta_s)}"
            + (f"\n{r.prompt}" if r.prompt else "")
            + (f"\n[red]{u.run.error}[/]" if u.run.error else "")
        )
        if u.lines:
            self.query_one("#run-log", Log).write_lines(u.lines)
        if not self.config_shown:
            cfg = u.run.config
            self.query_one("#run-config", Static).update(to_yaml(cfg).rstrip() if cfg else "(no config recorded)")
            self.config_shown = True
        fill_table(
            self.query_one("#run-ckpts", DataTable),
            [
                (
                    str(c.id),
                    (
                        str(c.step),
                        fmt_score(clip_score(c.metrics)),
                        ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in c.metrics.items()),
                        c.path,
                    ),
                )
                for c in u.ckpts
            ],
        )
        tags_widget = self.query_one("#tags", SelectionList)
        new_tags = [t for t in u.tags if t not in self.known_tags]
        if new_tags:
            defaults = default_tags(r.kind, u.tags)
            for t in new_tags:
                chosen = t in defaults and (not self.selected or len(self.selected) < 4)
                tags_widget.add_option((t, t, chosen))
                if chosen:
                    self.selected.append(t)
            self.known_tags = list(u.tags)
            self._sync_charts()
        if u.metrics_error:
            self.query_one("#charts-empty", Static).update(u.metrics_error)
        if u.series:
            self._draw(u.series)

    @on(SelectionList.SelectedChanged, "#tags")
    def _tags_changed(self) -> None:
        self.selected = [t for t in self.query_one("#tags", SelectionList).selected if t in self.known_tags]
        self._sync_charts()
        if self.metrics is not None:
            self._draw({t: self.metrics.xy(t, self._max_points()) for t in self.selected})

    def _sync_charts(self) -> None:
        from anyskill_tui.screens.metric_chart import MetricChart

        box = self.query_one("#chart-list", VerticalScroll)
        wanted = {_chart_id(t): t for t in self.selected}
        for w in list(box.query(MetricChart)):
            if w.id not in wanted:
                w.remove()
        have = {w.id for w in box.query(MetricChart)}
        for cid, tag in wanted.items():
            if cid not in have:
                box.mount(MetricChart(tag, id=cid, classes="chart"))
        self.query_one("#charts-empty", Static).display = not wanted

    def _draw(self, series: dict[str, tuple[Any, Any]]) -> None:
        from anyskill_tui.screens.metric_chart import MetricChart

        for tag in self.selected:
            if tag not in series:
                continue
            try:
                chart = self.query_one(f"#{_chart_id(tag)}", MetricChart)
            except Exception:
                continue
            chart.show(*series[tag])

    def action_tab(self, tab: str) -> None:
        self.query_one("#run-tabs", TabbedContent).active = tab

    def action_stop(self) -> None:
        if self.row is not None and self.row.status not in ("queued", "running"):
            self.notify(f"run {self.run_id} is {self.row.status}: nothing to stop", severity="warning")
            return

        def done(yes: bool | None) -> None:
            if yes:
                self.run_worker(lambda: do_stop(self.app, self.run_id), thread=True, exit_on_error=False)

        self.app.push_screen(ConfirmModal(f"Stop run {self.run_id}?", "Stop"), done)

    def action_replay(self) -> None:
        app_of(self).replay_run(self.run_id)

    def action_resume(self) -> None:
        self.run_worker(lambda: do_resume(self.app, self.run_id), thread=True, exit_on_error=False)
