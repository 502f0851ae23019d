"""TUI at scale: Queue and Gallery over a store with 100,000 jobs and 100,000 artifacts.

Measures, in one process driving the real app headless (Textual's run_test):
time to first paint of the Queue and the Gallery (switch key posted → the first
frame drawn with the table filled), time of a page down in each (key posted → the
first frame with the cursor moved), the same through Pilot (whose round trip waits
for the app to go idle; a key nothing is bound to shows that floor), and the
process's peak RSS. The same steps on a
store of 100 rows are the baseline, so the ratio shows what the 100,000 rows cost.
Goals: first paint ≤ 0.5 s, page down ≤ 50 ms, RSS ≤ 250 MB.

    .venv/bin/python benchmarks/tui_scale.py [--rows 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sqlite3
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from textual import events
from textual.screen import Screen

from medialab_tui.app import MedialabApp
from medialab_tui.config import DataDir, load_config
from medialab_tui.store.db import Store


def fill(data: DataDir, rows: int) -> None:
    """Runs of 10 jobs, one artifact per job, written straight into the real schema."""
    Store(data.db_path).dispose()
    conn = sqlite3.connect(data.db_path)
    now = "2026-11-22 00:00:00.000000"
    pipeline = json.dumps({"name": "bench", "stages": [{"type": "txt2img"}]})
    with conn:
        conn.executemany(
            "INSERT INTO run (id, name, status, mode, pipeline, source, stage_index, stage_count,"
            " priority, error, user, created_at) VALUES (?, 'bench', 'succeeded', 'auto', ?, '',"
            " 0, 1, 0, '', 'bench', ?)",
            [(r, pipeline, now) for r in range(1, rows // 10 + 1)],
        )
        conn.executemany(
            "INSERT INTO job (id, run_id, stage_index, stage, status, priority, attempts, crashes,"
            " progress, step, total_steps, item, params, error, error_kind, cancel_requested,"
            " load_seconds, run_seconds, user, worker, created_at) VALUES (?, ?, 0, 'txt2img',"
            " 'succeeded', 0, 1, 0, 1.0, 8, 8, ?, '{}', '', '', 0, 0, 0.4, 'bench', 'cpu', ?)",
            [
                (j, (j - 1) // 10 + 1, json.dumps({"prompt": f"prompt {j}", "seed": j}), now)
                for j in range(1, rows + 1)
            ],
        )
        conn.executemany(
            "INSERT INTO artifact (id, run_id, job_id, stage, kind, path, name, prompt, seed,"
            " model,"
            " width, height, starred, params, created_at) VALUES (?, ?, ?, 'txt2img', 'image', ?,"
            " ?, ?, ?, 'demo-sd15', 64, 64, 0, '{}', ?)",
            [
                (a, (a - 1) // 10 + 1, a, f"/nowhere/{a}.png", f"{a}", f"prompt {a}", a, now)
                for a in range(1, rows + 1)
            ],
        )
    conn.close()


class Frames:
    """Times when the app composes a frame on which `condition` holds.

    Wraps Textual's `Screen._compositor_refresh` (the call that renders a screen's
    changes for the terminal), so a measure ends when the result is drawn, not when
    Pilot's own round trip (waiting for the app to go idle) ends.
    """

    def __init__(self) -> None:
        self.condition: Callable[[], bool] | None = None
        self.drawn: asyncio.Future[float] | None = None
        original = Screen._compositor_refresh
        frames = self

        def refresh(screen: Screen[object]) -> None:
            original(screen)
            waiting = frames.drawn
            if waiting is not None and not waiting.done() and frames.condition is not None:
                if screen.is_current and frames.condition():
                    waiting.set_result(time.perf_counter())

        Screen._compositor_refresh = refresh  # type: ignore[method-assign]

    async def time_key(self, app: MedialabApp, key: str, condition: Callable[[], bool]) -> float:
        """Seconds from posting `key` to the first frame on which `condition` holds."""
        self.condition = condition
        self.drawn = asyncio.get_running_loop().create_future()
        start = time.perf_counter()
        app.post_message(events.Key(key, None))
        end = await asyncio.wait_for(self.drawn, timeout=10)
        self.drawn = None
        return end - start


async def measure(data: DataDir, frames: Frames) -> dict[str, float]:
    from textual.widgets import DataTable

    app = MedialabApp(data, load_config(data), Store(data.db_path), host_engine=False)
    results: dict[str, float] = {}
    async with app.run_test(size=(120, 36)) as pilot:
        # Let the app settle: it builds the other screens in the moments after start.
        await pilot.pause(2.0)
        for key, mode in (("2", "queue"), ("4", "gallery")):

            def filled(mode: str = mode) -> bool:
                table = app.screen.query(DataTable).first() if app.current_mode == mode else None
                return table is not None and table.row_count > 0

            results[f"{mode}_first_paint_s"] = await frames.time_key(app, key, filled)
            table = app.screen.query(DataTable).first()
            table.focus()
            await pilot.pause(0.3)
            row = table.cursor_row
            results[f"{mode}_page_down_s"] = await frames.time_key(
                app, "pagedown", lambda t=table, r=row: t.cursor_row != r
            )
            await pilot.pause(0.3)
            # The same key through Pilot, and Pilot's round trip on a key nothing is bound to.
            start = time.perf_counter()
            await pilot.press("f12")
            results[f"{mode}_pilot_unbound_key_s"] = time.perf_counter() - start
            start = time.perf_counter()
            await pilot.press("pagedown")
            results[f"{mode}_pilot_page_down_s"] = time.perf_counter() - start
            await pilot.pause(0.3)
    results["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="medialab-tui-bench-") as tmp:
        small = DataDir(Path(tmp) / "small").ensure()
        fill(small, 100)
        frames = Frames()
        base = asyncio.run(measure(small, frames))
        full = DataDir(Path(tmp) / "full").ensure()
        start = time.perf_counter()
        fill(full, args.rows)
        print(f"filled {args.rows:,} jobs and artifacts in {time.perf_counter() - start:.1f} s")
        big = asyncio.run(measure(full, frames))
    goals = {"first_paint_s": 0.5, "page_down_s": 0.05, "_key_s": float("nan")}
    print(f"{'measure':<26}{'100 rows':>10}{f'{args.rows:,} rows':>14}{'ratio':>8}  goal")
    for key, value in big.items():
        if key == "peak_rss_mb":
            continue
        goal = next(g for suffix, g in goals.items() if key.endswith(suffix))
        if key.startswith(tuple(f"{m}_pilot" for m in ("queue", "gallery"))):
            goal = float("nan")  # shown for comparison: includes Pilot's own wait
        ratio = value / base[key] if base[key] else float("nan")
        print(f"{key:<26}{base[key]:>10.3f}{value:>14.3f}{ratio:>8.2f}  ≤ {goal}")
    print(f"{'peak RSS (MB, whole run)':<26}{'':>10}{big['peak_rss_mb']:>14.0f}{'':>8}  ≤ 250")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
