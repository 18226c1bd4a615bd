"""The Textual workbench (placeholder until the TUI issue)."""

from __future__ import annotations


def run_app() -> None:
    from textual.app import App, ComposeResult
    from textual.widgets import Footer, Header, Static

    class AnySkillApp(App):
        TITLE = "anyskill"

        def compose(self) -> ComposeResult:
            yield Header()
            yield Static("anyskill workbench: the library screen arrives with the TUI issue.")
            yield Footer()

    AnySkillApp().run()
