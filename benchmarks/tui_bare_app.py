"""The baseline of `tui_start.py`: the least a Textual app with medialab's frame does.

A header, a footer and a filled table of 10 rows, nothing else: the cost of Python,
Textual and one full frame on this machine. `tui_start.py` times it beside `medialab`
in the same run, so the ratio says how much medialab adds, whatever the machine's speed.

    .venv/bin/python benchmarks/tui_bare_app.py   # runs until ctrl+q
"""

from __future__ import annotations

from textual.app import App, ComposeResult
from textual.widgets import DataTable, Footer, Header

MARK = "bare frame ready"  # the title, in the header
ROWS = 10
LAST_ROW = f"{ROWS} txt2img"


class BareApp(App[None]):
    TITLE = MARK

    def compose(self) -> ComposeResult:
        yield Header()
        yield DataTable()
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("stage", "steps")
        for i in range(1, ROWS + 1):
            table.add_row(f"{i} txt2img", "steps 4")


if __name__ == "__main__":
    BareApp().run()
