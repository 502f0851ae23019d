"""The `medialab` command line (SPEC §8).

Commands import what they need when they run, so listing commands start fast
and nothing here imports torch: generation happens in the worker process.
Exit codes: 0 success, 1 the run failed, 2 invalid input, 3 cancelled,
4 no engine could be reached or started.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from medialab_tui import __version__
from medialab_tui.config import (
    Config,
    DataDir,
    allow_image_pixels,
    default_data_dir,
    keep_private,
    load_config,
    open_data_dir,
)
from medialab_tui.errors import EngineUnavailable, InputError, MedialabError
from medialab_tui.text import human_seconds, human_size, visible, visible_lines

if TYPE_CHECKING:
    import sqlite3
    from datetime import datetime

    from medialab_tui.engine.roots import RootProblem
    from medialab_tui.store.db import Store
    from medialab_tui.store.labels import Labels
    from medialab_tui.store.queries import GalleryQuery
    from medialab_tui.store.views import ArtifactView, JobView, RunView

EXIT_OK, EXIT_FAILED, EXIT_INPUT, EXIT_CANCELLED, EXIT_NO_ENGINE = 0, 1, 2, 3, 4
# A run with more jobs than this asks before it goes in (`run --yes` skips the question);
# the same number as engine.queue.LARGE_RUN_JOBS, kept here so --help imports no engine.
LARGE_RUN_JOBS = 500
# A run handed to a warm host that no host takes within this long is submitted here.
HANDOFF_TAKE_S = 10.0
HOST_CHECK_S = 0.5


@dataclass
class Context:
    data: DataDir
    as_json: bool
    _config: Config | None = None
    _store: Store | None = None

    @property
    def config(self) -> Config:
        """`config.toml`, read when a command first needs it (reading it imports
        pydantic, which a run handed to a warm host never needs here)."""
        if self._config is None:
            self._config = load_config(self.data)
        return self._config

    @property
    def store(self) -> Store:
        if self._store is None:
            from medialab_tui.store.db import Store

            self._store = Store(self.data.db_path)
        return self._store


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=None, default=str) + "\n")


def _table(columns: list[str], rows: list[list[Any]], empty: str) -> None:
    """Aligned rows; each cell plain text with its control characters shown (names,
    prompts and paths are user text: not markup, not terminal sequences)."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console()
    if not rows:
        console.print(Text(visible(empty)))
        return
    table = Table(*columns, box=None, header_style="bold", pad_edge=False)
    for row in rows:
        table.add_row(*(Text("" if v is None else visible(str(v))) for v in row))
    console.print(table)


def _engine_note(ctx: Context, *, start: bool = False) -> str:
    """Who will do the work just queued; with `start`, an engine host is started when
    none runs (so work queued from a script does not wait for somebody to open one)."""
    from medialab_tui.engine.host import describe_holder
    from medialab_tui.hosting import current_host, engine_log, ensure_host

    if start:
        holder, started = ensure_host(ctx.data)
        if started:
            return f"Started the engine host (pid {holder.get('pid')}; log {engine_log(ctx.data)})."
    holder = current_host(ctx.data)
    if holder is None:
        return (
            "No engine is running: the work waits in the queue until one starts "
            "(`medialab serve`, `medialab` or `medialab run`)."
        )
    return f"The engine is hosted by {describe_holder(holder)}."


# -- commands ----------------------------------------------------------------------


def cmd_tui(ctx: Context, args: argparse.Namespace) -> int:
    # textual-image asks the terminal what graphics it speaks when first imported;
    # that must happen before Textual takes over the terminal.
    import textual_image.widget  # noqa: F401

    from medialab_tui.app import MedialabApp

    pipeline = Path(args.pipeline) if getattr(args, "pipeline", None) else None
    if pipeline is not None and not pipeline.is_file():
        raise InputError(f"{pipeline}: no such file")
    MedialabApp(ctx.data, ctx.config, ctx.store, pipeline=pipeline).run()
    return EXIT_OK


def cmd_serve(ctx: Context, args: argparse.Namespace) -> int:
    import asyncio
    import logging
    import signal

    from medialab_tui.engine.host import HostLock, describe_holder
    from medialab_tui.engine.scheduler import Engine
    from medialab_tui.store import backup

    config = ctx.config
    if getattr(args, "cluster", None) is not None:  # `medialab --headless` has no flag
        config = _with_cluster(config, args.cluster)
    lock = HostLock(ctx.data.lock_path)
    if not lock.try_acquire("serve"):
        holder = lock.holder() or {}
        raise EngineUnavailable(f"the engine is already hosted by {describe_holder(holder)}")
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    store = ctx.store
    engine: Engine | None = None
    # Until the engine's loop handles them (below), a SIGTERM or Ctrl+C only asks the
    # host to leave before it starts: the check and backup still finish, and the
    # host exits as after any stop instead of dying half-way through starting.
    stopped_early: list[int] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, _frame: stopped_early.append(signum))
    signal.signal(signal.SIGHUP, signal.SIG_IGN)

    async def main() -> None:
        nonlocal engine
        engine = Engine(ctx.data, store, config)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, engine.request_stop)
        if stopped_early:
            return
        # A dropped SSH session must not stop a server started without nohup.
        loop.add_signal_handler(signal.SIGHUP, lambda: None)
        # A client that handed over a run (`run` on a warm host) says so at once.
        loop.add_signal_handler(signal.SIGUSR1, engine.wake)
        engine.wake_signal = "SIGUSR1"
        keep = ctx.config.keep_alive
        print(
            visible(
                f"medialab engine serving {ctx.data.root} as pid {engine.pid} "
                f"(keep-alive {human_seconds(keep)}; Ctrl+C or `medialab stop` to stop)"
            ),
            file=sys.stderr,
            flush=True,
        )
        await engine.run()

    try:
        # The host is the one process that checks the whole file and keeps backups.
        store.verify()
        backup.host_started(store.path)
        asyncio.run(main())
    finally:
        backup.finish_pending()
        # Close the database before the lock goes: once `stop` sees the host gone,
        # the data directory's files are settled (SQLite removes its -shm on the
        # last close), and a copy or backup of it taken then is whole.
        store.dispose()
        lock.release()
    reason = f" ({engine.leave_reason})" if engine is not None and engine.leave_reason else ""
    print(f"medialab engine stopped{reason}; unfinished jobs stay queued.", file=sys.stderr)
    return EXIT_OK


def _with_cluster(config: Config, address: str) -> Config:
    """The config with `--cluster ADDR` in place of its `cluster` (checked as the
    config key is; "" runs on this host's devices)."""
    import dataclasses

    from pydantic import TypeAdapter, ValidationError

    from medialab_tui.config_schema import SchedulerAddress

    if address:
        try:
            TypeAdapter(SchedulerAddress).validate_python(address)
        except ValidationError as exc:
            reason = exc.errors()[0]["msg"].removeprefix("Value error, ")
            raise InputError(f"--cluster {visible(address)}: {reason}") from None
    return dataclasses.replace(config, cluster=address)


def cmd_stop(ctx: Context, args: argparse.Namespace) -> int:
    """Ask the host to leave, after its running job (or at once with --now), and wait."""
    import time

    from medialab_tui.engine import daemon
    from medialab_tui.engine.host import describe_holder
    from medialab_tui.hosting import current_host

    holder = current_host(ctx.data)
    if holder is None or not holder.get("pid"):
        print("No engine is running.")
        return EXIT_OK
    pid = int(holder["pid"])
    daemon.request_stop(ctx.store, pid, now=args.now)
    who = describe_holder(holder)
    if args.now:
        print(visible(f"Stopping {who} now; its running job goes back to the queue…"))
    else:
        print(visible(f"Stopping {who} after its running job…"))
    try:
        while True:
            now_holder = current_host(ctx.data)
            if now_holder is None or now_holder.get("pid") != pid:
                break
            time.sleep(0.05)
    except KeyboardInterrupt:
        print("Not waiting any more; the engine still leaves as asked.", file=sys.stderr)
        return EXIT_CANCELLED
    print("The engine has stopped; unfinished jobs stay queued.")
    return EXIT_OK


def _format_seconds(seconds: float) -> str:
    return human_seconds(seconds)


# What a stage's outputs are called in the expansion line of a dry run.
_OUTPUT_WORDS = {
    "prompt_enhance": "prompts",
    "txt2img": "images",
    "img2img": "images",
    "refine": "refined",
    "detail": "detailed",
    "upscale": "upscaled",
    "blend": "blended",
    "i2v": "videos",
    "interpolate": "interpolated",
    "grid": "sheets",
}


def _expansion_tree(prepared: Any) -> str:
    """`1 image → 5 prompts → 10 images → 10 upscaled`."""
    from medialab_tui.engine.stages import STAGES

    inputs = prepared.pipeline.inputs
    first = STAGES[prepared.plan[0].type]
    if first.takes in ("image", "video"):
        count, noun = len(getattr(inputs, f"{first.takes}s")), first.takes
    else:
        count, noun = len([p for p in inputs.prompts if p.strip()]), "prompt"
    chain = [f"{count} {noun}{'s' if count != 1 else ''}"]
    chain += [f"{p.outputs} {_OUTPUT_WORDS.get(p.type, p.type)}" for p in prepared.plan]
    return " → ".join(chain)


def _video_seconds(prepared: Any, step: Any) -> float:
    """Seconds of video a stage's outputs hold together (0 for stages that make none
    of their own frames): frames × outputs at the rate the stage gives them."""
    stage = prepared.pipeline.stages[step.index]
    frames = getattr(stage, "frames", None)
    model = prepared.models[step.index]
    rate = stage.output_rate(None, model.arch if model else None) if frames else None
    return float(frames * step.outputs / rate) if frames and rate else 0.0


def _print_plan(ctx: Context, prepared: Any) -> None:
    total = sum(p.seconds for p in prepared.plan)
    price = ctx.config.price_per_gpu_hour
    video = {p.index: _video_seconds(prepared, p) for p in prepared.plan}
    if ctx.as_json:
        _print_json(
            {
                "name": prepared.pipeline.name,
                "stages": [
                    {
                        "stage": p.index + 1,
                        "type": p.type,
                        "jobs": p.jobs,
                        "outputs": p.outputs,
                        "seconds": round(p.seconds, 2),
                        "basis": p.basis,
                        **_video_cost(p.seconds, video[p.index], price),
                        **_sweep_axes(prepared, p),
                    }
                    for p in prepared.plan
                ],
                "tree": _expansion_tree(prepared),
                "jobs": sum(p.jobs for p in prepared.plan),
                "outputs": prepared.outputs,
                "seconds": round(total, 2),
                "cost": round(total / 3600 * price, 4) if price else None,
                "notices": prepared.notices,
            }
        )
        return
    print(visible(f"{prepared.pipeline.name}: {_expansion_tree(prepared)}"))
    _table(
        ["stage", "type", "jobs", "outputs", "estimate", "from"],
        [
            [p.index + 1, p.type, p.jobs, p.outputs, _format_seconds(p.seconds), p.basis]
            for p in prepared.plan
        ],
        "",
    )
    from medialab_tui.engine.sweep import describe

    for p in prepared.plan:
        if axes := describe(prepared.pipeline.stages[p.index]):
            cells = f"{p.cells} cell{'s' if p.cells != 1 else ''}"
            print(visible(f"stage {p.index + 1} ({p.type}): sweep {axes} = {cells}"))
    line = f"total: {_format_seconds(total)} of GPU time"
    if price:
        line += f", about {total / 3600 * price:.2f} at {price:g} per GPU-hour"
    print(line)
    for p in prepared.plan:
        cost = _video_cost(p.seconds, video[p.index], price)
        if cost:
            line = f"stage {p.index + 1} ({p.type}): {cost['video_seconds']:g} s of video"
            if "cost_per_video_second" in cost:
                line += f", about {cost['cost_per_video_second']:.3g} per video second"
            print(line)
    for notice in prepared.notices:
        print(visible(f"note: {notice}"), file=sys.stderr)
    if prepared.pipeline.mode == "auto" and any(s.review for s in prepared.pipeline.stages):
        print(
            'note: mode = "auto" runs straight through; review = true pauses only in '
            '"checkpoint" mode',
            file=sys.stderr,
        )


def _sweep_axes(prepared: Any, step: Any) -> dict[str, Any]:
    """A swept stage's axes (key → values) and how many cells they make; nothing for
    other stages."""
    from medialab_tui.engine.sweep import sweep_of

    axes = sweep_of(prepared.pipeline.stages[step.index])
    return {"sweep": axes, "cells": step.cells} if axes else {}


def _video_cost(seconds: float, video_seconds: float, price: float) -> dict[str, float]:
    """A video stage's seconds of video and, with a price per GPU-hour, what one of
    them costs; nothing for other stages."""
    if not video_seconds:
        return {}
    cost = {"video_seconds": round(video_seconds, 3)}
    if price:
        cost["cost_per_video_second"] = round(seconds / 3600 * price / video_seconds, 6)
    return cost


def _confirm_large(prepared: Any, args: argparse.Namespace) -> None:
    """Very large expansions go in only when the operator says so (`--yes` or a typed y)."""
    jobs = prepared.jobs
    if not prepared.large or getattr(args, "yes", False):
        return
    what = f"this run makes {jobs} jobs and {prepared.outputs} outputs"
    if sys.stdin.isatty() and sys.stderr.isatty():
        print(f"{what}. Submit it? [y/N] ", end="", file=sys.stderr, flush=True)
        if sys.stdin.readline().strip().lower() in ("y", "yes"):
            return
        raise InputError("not submitted")
    raise InputError(f"{what}; pass --yes to submit it")


def cmd_run(ctx: Context, args: argparse.Namespace) -> int:
    path = Path(args.file)
    if not getattr(args, "dry_run", False):
        handed = _hand_to_host(ctx, args, path)
        if handed is not None:
            return _queued_or_followed(ctx, args, handed["run_id"], handed["ref"], handed["name"])
    from medialab_tui.engine.pipeline import load_pipeline_file
    from medialab_tui.engine.queue import prepare

    return _submit_and_follow(
        ctx,
        args,
        lambda: prepare(ctx.store, load_pipeline_file(path), str(path), path.parent),
        None,
    )


def _hand_to_host(ctx: Context, args: argparse.Namespace, path: Path) -> dict[str, Any] | None:
    """Hand the pipeline to the running host, which validates and submits it with all
    it needs imported already (`engine.queue.handoff`): the job starts before this
    process could have imported the validation. None when no host runs, or when the
    run is left to the usual path here (a large run that needs a yes, a host that
    could not take it); the same input errors either way."""
    import os

    from medialab_tui.engine import daemon
    from medialab_tui.hosting import current_host
    from medialab_tui.tomlfile import read_toml_text

    holder = current_host(ctx.data)
    if holder is None or not holder.get("pid"):
        return None
    text = read_toml_text(path)
    request = {
        "text": text,
        "source": str(path),
        "base": os.path.abspath(path.parent),
        "stem": path.stem,
        "yes": bool(getattr(args, "yes", False)),
    }
    token = daemon.ask_submit(ctx.store, request)
    _nudge(ctx, holder)
    try:
        reply = _await_reply(ctx, token)
    except BaseException:
        daemon.withdraw_ask(ctx.store, token)
        raise
    if reply is None or reply.get("large") or reply.get("local"):
        return None
    if reply.get("error"):
        raise InputError.of_dict(reply["error"])
    if reply.get("failed"):
        raise MedialabError(str(reply["failed"]))
    return reply


def _nudge(ctx: Context, holder: dict[str, Any]) -> None:
    """Wake a host on this machine to look at the store now rather than at its next
    poll: with the signal its card names (a host without one is never sent any).
    It holds the lock, so its pid is that live host's."""
    import os
    import signal
    import socket

    from medialab_tui.engine import daemon

    card = daemon.host_info(ctx.store) or {}
    if (
        holder.get("host") != socket.gethostname()
        or card.get("pid") != holder.get("pid")
        or card.get("wake") != "SIGUSR1"
    ):
        return  # it polls the store anyway
    try:
        os.kill(int(holder["pid"]), signal.SIGUSR1)
    except (OSError, ValueError):
        pass


def _await_reply(ctx: Context, token: str) -> dict[str, Any] | None:
    """The host's reply to a handed-over run; None when no host took it (the host left,
    or it is too busy to take it within HANDOFF_TAKE_S): then nothing was submitted."""
    import time

    from medialab_tui.engine import daemon
    from medialab_tui.hosting import current_host

    asked = checked = time.monotonic()
    while True:
        reply = daemon.take_reply(ctx.store, token)
        if reply is not None:
            return reply
        now = time.monotonic()
        if now - checked >= HOST_CHECK_S:
            checked = now
            gone = current_host(ctx.data) is None
            if (gone or now - asked > HANDOFF_TAKE_S) and daemon.withdraw_ask(ctx.store, token):
                return None
            if gone:
                reply = daemon.take_reply(ctx.store, token)
                if reply is not None:
                    return reply
                raise EngineUnavailable(
                    "the engine host left while it was submitting the run; "
                    "`medialab runs` shows whether it went in"
                )
        time.sleep(0.01)


def _submit_and_follow(
    ctx: Context, args: argparse.Namespace, make: Callable[[], Any], rerun_of: int | None
) -> int:
    """Validate and submit; then start the engine host if none runs (it stays warm for
    `keep_alive` seconds afterwards) and follow the run, or return at once (--no-wait)."""
    from medialab_tui.engine import queue

    if getattr(args, "dry_run", False):
        _print_plan(ctx, make())
        return EXIT_OK
    if getattr(args, "no_start", False) and not args.no_wait:
        raise InputError("--no-start goes with --no-wait (a run that is followed needs an engine)")
    prepared = make()
    _confirm_large(prepared, args)
    run = queue.submit(ctx.store, ctx.data, prepared, rerun_of=rerun_of)
    return _queued_or_followed(ctx, args, run.id or 0, run.ref, run.name)


def _queued_or_followed(
    ctx: Context, args: argparse.Namespace, run_id: int, ref: str, name: str
) -> int:
    """After a submit: say the run is queued (--no-wait), or follow it to its end."""
    if args.no_wait:
        note = _engine_note(ctx, start=not getattr(args, "no_start", False))
        if ctx.as_json:
            _print_json({"run_id": ref, "status": "pending"})
        else:
            print(visible(f"Run {ref} queued ({name}). {note}"))
        return EXIT_OK
    import asyncio

    from medialab_tui.follow import EXIT_BY_STATUS, Display, follow_run
    from medialab_tui.hosting import ensure_host

    ensure_host(ctx.data)
    display = Display(ctx.as_json)
    if not ctx.as_json:
        print(visible(f"Run {ref}: {name}"))
    with display:
        summary = asyncio.run(
            follow_run(
                ctx.data, ctx.store, run_id, display, on_cancel=lambda: _cancel_quietly(ctx, ref)
            )
        )
    if ctx.as_json:
        _print_json(summary)
    else:
        _print_summary(summary)
    if summary["detached"]:
        return EXIT_OK  # left to the engine on purpose (a second Ctrl+C)
    return EXIT_BY_STATUS.get(summary["status"], EXIT_FAILED)


def _cancel_quietly(ctx: Context, ref: str) -> None:
    from medialab_tui.engine import queue

    try:
        queue.cancel(ctx.store, ref)
    except InputError:
        pass  # it finished meanwhile


def _print_summary(summary: dict[str, Any]) -> None:
    status = summary["status"]
    paths = summary["artifacts"]
    print(f"Run {summary['run_id']} {status}: {len(paths)} output{'s' if len(paths) != 1 else ''}")
    for path in paths:
        print(f"  {visible(path)}")
    if status == "review":
        print(f"It waits for review: `medialab approve {summary['run_id']}` continues it.")
    if summary.get("detached"):
        print(f"It goes on in the engine host: `medialab show {summary['run_id']}` follows it.")
    if summary.get("error"):
        print(f"error: {visible_lines(summary['error'])}", file=sys.stderr)


def _when(ts: datetime | None) -> str:
    """A stored (UTC) time as the listings print it."""
    return ts.strftime("%Y-%m-%d %H:%M:%S") if ts else ""


def cmd_runs(ctx: Context, args: argparse.Namespace) -> int:
    from medialab_tui.store.queries import list_runs

    runs = list_runs(ctx.store, limit=args.limit)
    if ctx.as_json:
        _print_json([r.to_json() for r in runs])
        return EXIT_OK
    _table(
        ["id", "name", "status", "stage", "created", "user"],
        [
            [r.ref, r.name, r.status, f"{r.stage}/{r.stages}", _when(r.created_at), r.user]
            for r in runs
        ],
        "No runs yet. `medialab run FILE.toml` starts one.",
    )
    return EXIT_OK


def _jobs_table(jobs: list[JobView], empty: str, *, run: bool = True) -> None:
    """Jobs as aligned lines (`run=False` leaves out the run column, for `show RUN`)."""
    columns = ["id", "run", "stage", "status", "progress", "attempts", "prompt", "error"]
    rows = [
        [
            j.ref,
            f"r{j.run_id}",
            j.stage,
            j.status,
            f"{j.progress:.0%}",
            j.attempts,
            j.prompt[:30],
            j.error[:50],
        ]
        for j in jobs
    ]
    if not run:
        columns.pop(1)
        rows = [row[:1] + row[2:] for row in rows]
    _table(columns, rows, empty)


def cmd_jobs(ctx: Context, args: argparse.Namespace) -> int:
    from medialab_tui.store.ids import parse_ref
    from medialab_tui.store.queries import list_jobs
    from medialab_tui.store.values import JOB_STATUSES

    if args.status and args.status not in JOB_STATUSES:
        raise InputError(f"--status must be one of {', '.join(JOB_STATUSES)} (got {args.status!r})")
    run_id = None
    if args.run:
        kind, run_id = parse_ref(args.run)
        if kind != "run":
            raise InputError(f"--run takes a run id, not {args.run}")
    jobs = list_jobs(ctx.store, status=args.status, run_id=run_id, limit=args.limit)
    if ctx.as_json:
        _print_json([j.to_json() for j in jobs])
        return EXIT_OK
    _jobs_table(jobs, "No jobs.")
    return EXIT_OK


# How many of a run's jobs `show RUN` lists before it points at `medialab jobs --run`.
SHOW_JOBS = 50


def _print_fields(title: str, fields: list[tuple[str, Any]]) -> None:
    """A heading line, then `key  value` lines with the values aligned (— for nothing).

    Control characters are shown, not obeyed; a multi-line value (a prompt) keeps its
    lines, the later ones indented under the first."""
    print(visible(title))
    width = max(len(key) for key, _ in fields)
    indent = "\n" + " " * (width + 4)
    for key, value in fields:
        shown = "—" if value in (None, "") else visible_lines(str(value))
        print(f"  {key:<{width}}  {shown.replace(chr(10), indent)}")


def _show_run(ctx: Context, run: RunView, row: sqlite3.Row) -> int:
    from medialab_tui.store.queries import run_artifacts, run_jobs

    jobs = run_jobs(ctx.store, run.id)
    artifacts = run_artifacts(ctx.store, run.id)
    if ctx.as_json:
        data = run.to_json()
        data["pipeline"] = row["pipeline"]
        data["jobs"] = [j.to_json() for j in jobs]
        data["artifacts"] = [a.path for a in artifacts]
        _print_json(data)
        return EXIT_OK
    _print_fields(
        f"run {run.ref}: {run.name}",
        [
            ("status", run.status),
            ("mode", run.mode),
            ("stage", f"{run.stage} of {run.stages}"),
            ("created", _when(run.created_at)),
            ("finished", _when(run.finished_at)),
            ("user", run.user),
            ("source", run.source),
            ("rerun of", f"a{run.rerun_of}" if run.rerun_of else ""),
            ("error", run.error),
            ("artifacts", len(artifacts)),
        ],
    )
    print(f"jobs ({len(jobs)})")
    _jobs_table(jobs[:SHOW_JOBS], "  none", run=False)
    if len(jobs) > SHOW_JOBS:
        print(f"… and {len(jobs) - SHOW_JOBS} more: `medialab jobs --run {run.ref}` lists them.")
    return EXIT_OK


def _show_job(ctx: Context, job: JobView, row: sqlite3.Row) -> int:
    if ctx.as_json:
        data = job.to_json()
        data["item"] = row["item"]
        data["params"] = {k: v for k, v in row["params"].items() if not k.startswith("_")}
        _print_json(data)
        return EXIT_OK
    progress = f"{job.progress:.0%}"
    if job.total_steps:
        progress += f" (step {job.step} of {job.total_steps})"
    _print_fields(
        f"job {job.ref} of run r{job.run_id}",
        [
            ("stage", f"{job.stage_index + 1} ({job.stage})"),
            ("status", job.status),
            ("progress", progress),
            ("attempts", job.attempts),
            ("error", f"{job.error} ({job.error_kind})" if job.error_kind else job.error),
            ("prompt", job.prompt),
            ("seed", job.seed),
            ("seconds", f"{job.run_seconds:.1f}"),
            ("worker", job.worker),
            ("created", _when(job.created_at)),
        ],
    )
    return EXIT_OK


def _show_artifact(ctx: Context, a: ArtifactView) -> int:
    if ctx.as_json:
        _print_json(a.to_json(lineage=True))
        return EXIT_OK
    _print_fields(
        f"artifact {a.ref} of run r{a.run_id}, job j{a.job_id}",
        [
            ("path", a.path),
            ("kind", a.kind),
            ("size", f"{a.width}×{a.height}" if a.width else ""),
            *(
                [
                    ("fps", f"{a.fps:g} ({a.fps_exact})" if a.fps is not None else ""),
                    ("frames", a.frames if a.frames is not None else ""),
                    ("duration", f"{a.duration:.3f} s" if a.duration is not None else ""),
                ]
                if a.kind == "video"
                else []
            ),
            ("stage", a.stage),
            ("prompt", a.prompt),
            ("seed", a.seed),
            ("model", a.model),
            ("parents", ", ".join(f"a{p}" for p in a.parents)),
            ("starred", "yes" if a.starred else "no"),
            ("created", _when(a.created_at)),
        ],
    )
    return EXIT_OK


def _show_toml(ctx: Context, view: Any) -> int:
    """The pipeline file that makes an artifact again (its chain up to it, with its seeds
    and edits; for an imported image a txt2img from the settings it carries)."""
    from medialab_tui.engine.queue import get
    from medialab_tui.engine.queue.rerun import pipeline_settings
    from medialab_tui.presets import pipeline_toml
    from medialab_tui.store.tables import Artifact
    from medialab_tui.store.views import ArtifactView

    if not isinstance(view, ArtifactView):
        raise InputError(f"show --toml takes an artifact id (like a7), not {view.ref}")
    if view.kind == "text":
        raise InputError(
            f"{view.ref} is a text artifact (prompts); show --toml makes images and videos again"
        )
    artifact = get(ctx.store, view.ref)
    assert isinstance(artifact, Artifact)
    sys.stdout.write(pipeline_toml(pipeline_settings(ctx.store, artifact)))
    return EXIT_OK


def cmd_show(ctx: Context, args: argparse.Namespace) -> int:
    from medialab_tui.store.queries import find
    from medialab_tui.store.views import JobView, RunView

    found = find(ctx.store, args.id)
    if args.toml:
        return _show_toml(ctx, found.view)
    if isinstance(found.view, RunView):
        return _show_run(ctx, found.view, found.row)
    if isinstance(found.view, JobView):
        return _show_job(ctx, found.view, found.row)
    return _show_artifact(ctx, found.view)


def _simple(action: str) -> Callable[[Context, argparse.Namespace], int]:
    """`cancel` and `retry`: one id in, one sentence out."""

    def command(ctx: Context, args: argparse.Namespace) -> int:
        from medialab_tui.engine import queue

        message = getattr(queue, action)(ctx.store, args.id)
        if ctx.as_json:
            _print_json({"id": args.id, "result": message})
        else:
            print(visible_lines(message))
        return EXIT_OK

    return command


def cmd_queue(state: str) -> Callable[[Context, argparse.Namespace], int]:
    def command(ctx: Context, args: argparse.Namespace) -> int:
        from medialab_tui.engine.queue import set_queue_state

        set_queue_state(ctx.store, state)
        text = (
            "Queue paused: the running job finishes, nothing new starts."
            if state == "paused"
            else "Queue resumed."
        )
        if ctx.as_json:
            _print_json({"queue": state})
        else:
            print(text)
        return EXIT_OK

    return command


def cmd_approve(ctx: Context, args: argparse.Namespace) -> int:
    from medialab_tui.engine.queue import approve

    edits: dict[str, str] = {}
    for text in args.edit or []:
        ref, sep, prompt = text.partition("=")
        if not sep or not prompt.strip():
            raise InputError(f"--edit takes ARTIFACT_ID=PROMPT, not {text!r}")
        edits[ref.strip()] = prompt.strip()
    message = approve(ctx.store, args.run, args.select or None, edits=edits)
    note = _engine_note(ctx, start=True)
    if ctx.as_json:
        _print_json({"run_id": args.run, "result": message})
    else:
        print(visible_lines(f"{message}. {note}"))
    return EXIT_OK


def cmd_rerun(ctx: Context, args: argparse.Namespace) -> int:
    from medialab_tui.engine.queue import get, parse_ref
    from medialab_tui.engine.queue.rerun import prepare_rerun
    from medialab_tui.store.tables import Artifact

    kind, ident = parse_ref(args.id if args.id[:1].isalpha() else f"a{args.id}")
    artifact = get(ctx.store, f"a{ident}") if kind == "artifact" else None
    if not isinstance(artifact, Artifact):
        raise InputError(f"rerun takes an artifact id (like a7), not {args.id}")
    return _submit_and_follow(ctx, args, lambda: prepare_rerun(ctx.store, artifact), ident)


def cmd_models_demo(ctx: Context, args: argparse.Namespace) -> int:
    import subprocess

    # Writing the demo weights needs torch, so it runs in a worker-side process.
    code = (
        "import sys, json; from pathlib import Path;"
        "from medialab_tui.engine.demo import write_demo_models;"
        "print(json.dumps([str(p) for p in write_demo_models(Path(sys.argv[1]))]))"
    )
    if not ctx.as_json:
        print(visible(f"Writing the demo models into {ctx.data.models} …"), file=sys.stderr)
    proc = subprocess.run(
        [sys.executable, "-c", code, str(ctx.data.models)], capture_output=True, text=True
    )
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or ["unknown error"]
        raise MedialabError(f"writing the demo models failed: {tail[0]}")
    written = [Path(p) for p in json.loads(proc.stdout.strip().splitlines()[-1])]
    from medialab_tui.engine.registry import scan

    result = scan(
        ctx.store,
        ctx.data,
        ctx.config,
        demo=frozenset(p.stem if p.is_file() else p.name for p in written),
    )
    _hash_unless_hosted(ctx, quiet=ctx.as_json)
    _say_root_problems(result.problems)
    if ctx.as_json:
        _print_json([str(p) for p in written])
    else:
        for p in written:
            print(visible(f"  {p.name}  {p}"))
        print("Demo models have random weights: they make abstract noise, not pictures.")
    return EXIT_OK


def _hash_unless_hosted(ctx: Context, *, quiet: bool) -> None:
    """Compute the hashes a scan left pending, here, unless an engine host runs: it
    hashes in the background. Progress goes to stderr."""
    from medialab_tui.engine.registry import HashProgress, hash_pending
    from medialab_tui.hosting import current_host

    if current_host(ctx.data) is not None:
        return
    shown = [""]

    def show(p: HashProgress) -> None:
        line = p.sentence
        if line != shown[0] and sys.stderr.isatty():
            print(f"\r{visible(line)}\x1b[K", end="", file=sys.stderr, flush=True)
            shown[0] = line

    hash_pending(ctx.store, ctx.config, progress=None if quiet else show)
    if shown[0]:
        print("\r\x1b[K", end="", file=sys.stderr, flush=True)


def _say_root_problems(problems: Sequence[RootProblem]) -> None:
    for problem in problems:
        print(f"medialab: {visible(problem.sentence)}", file=sys.stderr)


def cmd_models_scan(ctx: Context, args: argparse.Namespace) -> int:
    """Bring the registry in line with the roots. A source of roots that cannot be read
    (a broken yaml, an install with no models/) is named on stderr and exits 2, after
    every other root was read."""
    from medialab_tui.engine.registry import scan

    result = scan(ctx.store, ctx.data, ctx.config)
    _hash_unless_hosted(ctx, quiet=ctx.as_json)
    _say_root_problems(result.problems)
    if ctx.as_json:
        _print_json(
            {
                "added": result.added,
                "updated": result.updated,
                "removed": result.removed,
                "unchanged": result.unchanged,
                "skipped": [{"path": str(e.path), "reason": e.reason} for e in result.skipped],
                "broken": [{"path": str(e.path), "reason": e.reason} for e in result.broken],
                "problems": [p.to_json() for p in result.problems],
            }
        )
    else:
        line = (
            f"{len(result.added)} added, {len(result.updated)} updated, "
            f"{len(result.removed)} removed, {result.unchanged} unchanged"
        )
        extra = [f"{len(result.skipped)} skipped"] if result.skipped else []
        extra += [f"{len(result.broken)} broken"] if result.broken else []
        print(", ".join([line, *extra]))
        for entry in [*result.broken, *result.skipped]:
            print(visible(f"  {entry.path}: {entry.reason}"))
    return EXIT_INPUT if result.problems else EXIT_OK


def cmd_models_list(ctx: Context, args: argparse.Namespace) -> int:
    from medialab_tui.engine.roots import root_problems
    from medialab_tui.store.labels import clean_tags
    from medialab_tui.store.queries import list_models

    tag = next(iter(clean_tags([args.tag])), None) if args.tag else None
    models = list_models(ctx.store, args.kind, tag)
    _say_root_problems(root_problems(ctx.store))
    if ctx.as_json:
        _print_json([m.to_json() for m in models])
        return EXIT_OK
    # Tags and notes are in --json and on the Models screen: a column more would cut
    # the names at 80 columns.
    _table(
        ["name", "kind", "arch", "format", "size", "hash", "safe"],
        [
            [
                m.label,
                m.kind,
                m.arch,
                m.format,
                human_size(m.size),
                "pending" if m.hash_pending else m.short_hash,
                "yes" if m.safe else "NO (pickle)",
            ]
            for m in models
        ],
        "No models. `medialab models demo` writes small demo models; `medialab models scan` "
        "looks for new files.",
    )
    return EXIT_OK


def cmd_models_tag(ctx: Context, args: argparse.Namespace) -> int:
    from medialab_tui.store.labels import label_model

    if args.remove:
        labels = label_model(ctx.store, args.name, remove=args.tags)
    else:
        labels = label_model(ctx.store, args.name, add=args.tags)
    return _print_labels(ctx, labels)


def cmd_models_note(ctx: Context, args: argparse.Namespace) -> int:
    from medialab_tui.store.labels import label_model

    return _print_labels(ctx, label_model(ctx.store, args.name, note=args.text))


def _print_labels(ctx: Context, labels: Labels) -> int:
    if ctx.as_json:
        _print_json({"name": labels.name, "tags": list(labels.tags), "note": labels.note})
    else:
        print(visible(f"{labels.name}: tags {', '.join(labels.tags) or '(none)'}"))
        print(visible(f"{labels.name}: note {labels.note or '(none)'}"))
    return EXIT_OK


def _gallery_query(args: argparse.Namespace) -> GalleryQuery:
    """The `gallery` flags as one query, each value checked (exit 2 with one sentence)."""
    from medialab_tui.store.queries import (
        GALLERY_SOURCES,
        IMPORT_SOURCES,
        GalleryQuery,
        parse_since,
    )

    if args.kind and args.kind not in ("image", "video", "text"):
        raise InputError(f"--kind must be image, video or text (got {args.kind!r})")
    if args.source and args.source not in GALLERY_SOURCES:
        raise InputError(
            f"--source must be here, imported or one of {', '.join(IMPORT_SOURCES)}"
            f" (got {args.source!r})"
        )
    days, since = 0, None
    if args.since is not None:
        try:
            days, since = parse_since(args.since)
        except ValueError:
            raise InputError(
                f"--since must be today, week, month or a date like 2026-11-30 (got {args.since!r})"
            ) from None
    return GalleryQuery(
        search=args.search or "",
        kind=args.kind or "",
        stage=args.stage or "",
        model=args.model or "",
        starred=args.starred,
        source=args.source or "",
        days=days,
        since=since,
        limit=args.limit,
    )


def cmd_import(ctx: Context, args: argparse.Namespace) -> int:
    """Copy images made elsewhere into the gallery, their metadata read; originals untouched."""
    from medialab_tui.interop.importing import import_images

    shown = sys.stderr.isatty() and not ctx.as_json

    def progress(done: int, total: int) -> None:
        if shown:
            print(f"\rReading {done}/{total} images…", end="", file=sys.stderr, flush=True)

    results = import_images(ctx.store, ctx.data, [Path(p) for p in args.paths], progress)
    if shown:
        print(file=sys.stderr)
    if ctx.as_json:
        _print_json([r.to_json() for r in results])
        return EXIT_OK
    imported = [r for r in results if r.status == "imported"]
    if not any(r.status != "skipped" for r in results):
        skipped = len(results)
        print(
            "Nothing to import: no PNG, JPEG or WebP images there"
            + (
                f" ({skipped} other file{'s' if skipped != 1 else ''} passed over)."
                if skipped
                else "."
            )
        )
        return EXIT_OK
    sources: dict[str, int] = {}
    for r in imported:
        sources[r.source] = sources.get(r.source, 0) + 1
    said = ", ".join(f"{n} {source}" for source, n in sorted(sources.items()))
    print(
        f"Imported {len(imported)} image{'s' if len(imported) != 1 else ''}"
        + (f" ({said})" if said else "")
        + "."
    )
    for r in results:
        if r.status == "imported":
            print(visible(f"  {r.artifact}  {r.path}  ({r.source})"))
        elif r.status == "duplicate":
            print(visible(f"  {r.path} was imported before, as {r.artifact}"))
        else:
            print(visible(f"  {r.path} skipped: {r.reason}"))
    return EXIT_OK


def cmd_export(ctx: Context, args: argparse.Namespace) -> int:
    """Copy artifacts out of the data directory, into a folder or a zip."""
    from medialab_tui.interop.exporting import artifacts_of, export_artifacts

    views = artifacts_of(ctx.store, args.ids)
    shown = sys.stderr.isatty() and not ctx.as_json and len(views) > 1

    def progress(done: int, total: int) -> None:
        if shown:
            print(f"\rExporting {done}/{total}…", end="", file=sys.stderr, flush=True)

    target = Path(args.to).expanduser()
    results = export_artifacts(views, target, strip=args.strip, force=args.force, progress=progress)
    if shown:
        print(file=sys.stderr)
    if ctx.as_json:
        _print_json({"to": str(target), "artifacts": [r.to_json() for r in results]})
        return EXIT_OK
    one = len(results) == 1
    how = "without metadata" if args.strip else f"with {'its' if one else 'their'} metadata"
    count = f"{len(results)} artifact{'s' if len(results) != 1 else ''}"
    print(visible(f"Exported {count} {how} to {target}."))
    for r in results:
        print(visible(f"  {r.artifact}  {', '.join(Path(f).name for f in r.files)}"))
    return EXIT_OK


def cmd_gallery(ctx: Context, args: argparse.Namespace) -> int:
    from medialab_tui.store.queries import GalleryQuery, gallery

    query = _gallery_query(args)
    arts = gallery(ctx.store, query)
    if ctx.as_json:
        _print_json([a.to_json() for a in arts])
        return EXIT_OK
    if query == GalleryQuery(limit=query.limit):
        empty = "Nothing made yet."
    elif query == GalleryQuery(search=query.search, limit=query.limit):
        empty = f"Nothing matches {query.search!r}."
    else:
        empty = "Nothing matches these filters."
    _table(
        ["id", "run", "stage", "kind", "size", "seed", "prompt", "path"],
        [
            [
                a.ref,
                f"r{a.run_id}",
                a.stage,
                a.kind,
                f"{a.width}×{a.height}" if a.width else "",
                a.seed,
                a.prompt[:30],
                a.path,
            ]
            for a in arts
        ],
        empty,
    )
    return EXIT_OK


def cmd_doctor(ctx: Context, args: argparse.Namespace) -> int:
    """The machine report; with a damaged store it still reports, then exits 4."""
    from medialab_tui.doctor import gather, open_store

    if args.restore:
        return _restore(ctx, args)
    store, damage = open_store(ctx.data)
    report = gather(ctx.data, ctx.config, store, damage)
    if ctx.as_json:
        _print_json(report)
    else:
        width = max(len(k) for k in report)
        for key, value in report.items():
            print(f"{key:<{width}}  {visible_lines(str(value))}")
    if damage is not None:
        print(f"medialab: {visible_lines(str(damage))}", file=sys.stderr)
        return damage.exit_code
    return EXIT_OK


def _restore(ctx: Context, args: argparse.Namespace) -> int:
    """`doctor --restore`: say what will be lost, ask (or take `--yes`), then restore."""
    from medialab_tui.engine.host import HostLock, describe_holder
    from medialab_tui.store import backup
    from medialab_tui.store.db import Store

    lock = HostLock(ctx.data.lock_path)
    if not lock.try_acquire("restore"):
        holder = describe_holder(lock.holder() or {})
        raise EngineUnavailable(
            f"the engine is hosted by {holder}: stop it before restoring; nothing was changed"
        )
    try:
        plan = backup.plan_restore(ctx.data.db_path)
        for line in plan.lines():
            print(visible_lines(line), file=sys.stderr)
        if not args.yes:
            if not (sys.stdin.isatty() and sys.stderr.isatty()):
                raise InputError(
                    f"pass --yes to restore the backup from {plan.backup.label}; "
                    "nothing was changed"
                )
            print("Restore it? [y/N] ", end="", file=sys.stderr, flush=True)
            if sys.stdin.readline().strip().lower() not in ("y", "yes"):
                raise InputError("not restored; nothing was changed")
        aside = backup.restore(plan)
        Store(ctx.data.db_path).dispose()  # opens (and migrates) the restored file
    finally:
        lock.release()
    if ctx.as_json:
        _print_json(
            {
                "restored": str(plan.backup.path),
                "backup_time": plan.backup.taken_at.isoformat(),
                "counts": plan.backup_counts,
                "kept_aside": str(aside) if aside else None,
            }
        )
    else:
        kept = f"; the file it replaced is kept as {aside}" if aside else ""
        print(
            visible(f"Restored the backup from {plan.backup.label} into {ctx.data.db_path}{kept}.")
        )
    return EXIT_OK


# -- the parser --------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse, but a mistake on the command line is one sentence (exit 2), not the
    usage block: `medialab: unrecognized arguments: --bogus; see `medialab --help``."""

    def error(self, message: str) -> NoReturn:
        raise InputError(f"{message}; see `{self.prog} --help`")


# The most a count flag (`--limit`) takes: far beyond any listing, well inside SQLite.
MAX_COUNT = 1_000_000_000


def whole_number(flag: str, low: int, high: int = MAX_COUNT) -> Callable[[str], int]:
    """An argparse `type` for `flag`: a whole number from `low` to `high`, else the
    sentence why (an `InputError`, which argparse lets through: exit 2, no usage)."""

    def parse(text: str) -> int:
        shown = text if len(text) <= 40 else text[:39] + "…"
        try:
            value = int(text)
        except ValueError:  # also a number of more than 4300 digits
            raise InputError(f"{flag} must be a whole number (got {shown!r})") from None
        if value < low:
            raise InputError(f"{flag} must be at least {low} (got {value})")
        if value > high:
            raise InputError(f"{flag} must be at most {high:,} (got {shown})")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument(
        "--data-dir",
        metavar="PATH",
        default=argparse.SUPPRESS,
        help="data directory (default: $MEDIALAB_HOME, else the XDG data dir)",
    )
    common.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="print JSON instead of text"
    )

    parser = _Parser(
        prog="medialab",
        parents=[common],
        description="A keyboard-driven terminal studio for generative media.",
        epilog="Exit codes: 0 ok, 1 run failed, 2 invalid input, 3 cancelled, 4 no engine.",
    )
    parser.add_argument("--version", action="version", version=f"medialab {__version__}")
    parser.add_argument(
        "--headless",
        action="store_true",
        help="run the engine with no UI (same as `medialab serve`)",
    )
    parser.add_argument(
        "--pipeline", metavar="FILE.toml", help="open the TUI with this pipeline in the builder"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(name: str, func: Callable[..., int], help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[common], help=help_text, description=help_text)
        p.set_defaults(func=func)
        return p

    p = add(
        "serve",
        cmd_serve,
        "run the engine host with no UI until SIGINT/SIGTERM, `medialab stop`, "
        "or `keep_alive` idle seconds",
    )
    p.add_argument(
        "--cluster",
        metavar="ADDR",
        help="run jobs on the Dask scheduler at ADDR (tcp://HOST:8786, tls://…) in place of "
        'config cluster; "" runs them on this host',
    )
    p = add("stop", cmd_stop, "end the engine host after its running job")
    p.add_argument(
        "--now",
        action="store_true",
        help="cancel the running job back to the queue (no attempt counted) and stop at once",
    )
    p = add("run", cmd_run, "validate a pipeline file, submit it and follow it to the end")
    p.add_argument("file", metavar="FILE.toml")
    p.add_argument(
        "--dry-run", action="store_true", help="print the plan and estimate; submit nothing"
    )
    p.add_argument("--no-wait", action="store_true", help="submit and return at once")
    p.add_argument(
        "--no-start",
        action="store_true",
        help="with --no-wait: only submit; start no engine host (the run waits for one)",
    )
    p.add_argument(
        "--yes",
        action="store_true",
        help=f"submit a very large run (over {LARGE_RUN_JOBS} jobs) without asking",
    )
    p = add("runs", cmd_runs, "list runs, newest first")
    p.add_argument(
        "--limit", type=whole_number("--limit", 1), default=50, help="at most this many (50)"
    )
    p = add("jobs", cmd_jobs, "list jobs, newest first")
    p.add_argument("--status", help="queued, running, succeeded, failed or cancelled")
    p.add_argument("--run", help="only the jobs of this run")
    p.add_argument(
        "--limit", type=whole_number("--limit", 1), default=100, help="at most this many (100)"
    )
    p = add("show", cmd_show, "show a run (r12), a job (j40) or an artifact (a7)")
    p.add_argument("id")
    p.add_argument(
        "--toml",
        action="store_true",
        help="print a pipeline file that makes this artifact again (for `medialab run`)",
    )
    for name, text in (
        ("cancel", "cancel a run (every unfinished job) or one job"),
        ("retry", "queue a failed or cancelled job (or all of a run's) again"),
    ):
        p = add(name, _simple(name), text)
        p.add_argument("id", help="a run (r12) or a job (j40)")
    add("pause", cmd_queue("paused"), "pause the queue (the running job finishes)")
    add("resume", cmd_queue("active"), "resume the queue")
    p = add("approve", cmd_approve, "continue a run waiting in review")
    p.add_argument("run")
    p.add_argument("--select", nargs="+", metavar="ARTIFACT_ID", help="continue with these only")
    p.add_argument(
        "--edit",
        action="append",
        metavar="ARTIFACT_ID=PROMPT",
        help="continue with this prompt instead of the output's own (enhanced prompts)",
    )
    p = add("rerun", cmd_rerun, "run an artifact's stage again with the same parameters")
    p.add_argument("id", metavar="ARTIFACT_ID")
    p.add_argument("--no-wait", action="store_true", help="submit and return at once")
    models = sub.add_parser(
        "models", parents=[common], help="the model registry", description="The model registry."
    )
    msub = models.add_subparsers(dest="models_command", metavar="COMMAND", required=True)
    for name, func, text in (
        ("scan", cmd_models_scan, "look for new, changed and removed model files"),
        ("list", cmd_models_list, "list registered models"),
        ("demo", cmd_models_demo, "write small random-weight demo models and register them"),
        ("tag", cmd_models_tag, "add tags to a model (or remove them with --remove)"),
        ("note", cmd_models_note, 'set a model\'s note ("" clears it)'),
    ):
        mp = msub.add_parser(name, parents=[common], help=text, description=text)
        mp.set_defaults(func=func)
        if name == "list":
            mp.add_argument("--kind", help="checkpoint, lora, vae, controlnet, upscaler…")
            mp.add_argument("--tag", help="only models with this tag (see `models tag`)")
        if name in ("tag", "note"):
            mp.add_argument("name", metavar="NAME", help="a model's name from `models list`")
        if name == "tag":
            mp.add_argument(
                "tags",
                nargs="+",
                metavar="TAG",
                help="tags to add: words or phrases, several may be given separated by "
                "commas; lowercase, at most 32 characters each, 16 a model",
            )
            mp.add_argument("--remove", action="store_true", help="remove these tags instead")
        if name == "note":
            mp.add_argument("text", metavar="TEXT", help="one line, at most 500 characters")
    p = add("gallery", cmd_gallery, "list artifacts, newest first")
    p.add_argument("--search", metavar="Q", help="find prompts containing Q")
    p.add_argument("--kind", help="image, video or text")
    p.add_argument("--stage", help="only what this stage made: txt2img, upscale, import…")
    p.add_argument("--model", help="only what this model made (a name from `models list`)")
    p.add_argument("--starred", action="store_true", help="only starred artifacts")
    p.add_argument(
        "--source",
        metavar="S",
        help="here (made in medialab), imported, or the tool an imported image came from: "
        "a1111, comfyui, invokeai, swarmui, medialab, none",
    )
    p.add_argument(
        "--since",
        metavar="WHEN",
        help="only what was made since: today, week, month (the last 1, 7, 30 days) "
        "or a date or time like 2026-11-30 or 2026-11-30T14:00 (local time)",
    )
    p.add_argument(
        "--limit",
        type=whole_number("--limit", 1),
        default=100,
        help="at most this many (default 100)",
    )
    p = add(
        "import",
        cmd_import,
        "copy images made by other tools (or by medialab) into the gallery with their metadata "
        "read: A1111/Forge, ComfyUI, InvokeAI, SwarmUI, medialab; the originals are untouched",
    )
    p.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="PNG, JPEG or WebP files, or folders (read recursively)",
    )
    p = add(
        "export",
        cmd_export,
        "copy artifacts out of the data directory with their metadata (and JSON sidecars), "
        "into a folder or a zip file",
    )
    p.add_argument(
        "ids",
        nargs="+",
        metavar="ID",
        help="artifacts (a7); a job (j40) or a run (r12) exports all of its artifacts",
    )
    p.add_argument(
        "--to",
        required=True,
        metavar="DIR|FILE.zip",
        help="a folder (made when missing; a name already there gets -2, -3…) or a zip file",
    )
    p.add_argument(
        "--strip",
        action="store_true",
        help="write copies without metadata: images re-saved from their pixels, videos "
        "remuxed without their tags (frames not re-encoded), no sidecars",
    )
    p.add_argument("--force", action="store_true", help="replace a zip file that exists")
    p = add("doctor", cmd_doctor, "what this machine has: device, torch/CUDA, data dir, graphics")
    # doctor opens the store itself: it reports on a damaged one instead of refusing.
    p.set_defaults(opens_store=False)
    p.add_argument(
        "--restore",
        action="store_true",
        help="bring back the newest good backup of the database (says first what is lost; "
        "the file it replaces is kept aside)",
    )
    p.add_argument(
        "--yes", action="store_true", help="restore without asking (needed with no terminal)"
    )
    return parser


# The commands that open images (inputs, outputs, thumbnails): PIL is told the caps.
# (`run` sets the limits in `prepare`, where it validates: here, or in a warm host.)
_OPEN_IMAGES = (cmd_tui, cmd_serve, cmd_rerun)


def main(argv: list[str] | None = None) -> int:
    keep_private()
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except InputError as exc:
        print(f"medialab: {visible_lines(str(exc))}", file=sys.stderr)
        return exc.exit_code
    func = getattr(args, "func", None)
    if func is None:
        func = cmd_serve if args.headless else cmd_tui
    data: DataDir | None = None
    ctx: Context | None = None
    try:
        root = Path(getattr(args, "data_dir", None) or default_data_dir()).expanduser()
        try:
            data = open_data_dir(root)
        except InputError as exc:
            if func is cmd_serve:  # a host with nowhere to keep the queue cannot start
                raise EngineUnavailable(str(exc)) from None
            raise
        ctx = Context(data, getattr(args, "json", False))
        if func in _OPEN_IMAGES:
            allow_image_pixels(ctx.config)
        elif func is not cmd_run:  # a run reads it only when it validates here
            ctx.config  # noqa: B018 - a broken config.toml is refused before anything
        if getattr(args, "opens_store", True):
            ctx.store  # noqa: B018 - a damaged store is refused before anything starts
        return func(ctx, args)
    except MedialabError as exc:
        # Sentences quote what was typed or read (ids, names, paths): shown, not obeyed.
        print(f"medialab: {visible_lines(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except OSError as exc:
        message = f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": ")
        print(f"medialab: {visible_lines(message)}", file=sys.stderr)
        return EXIT_FAILED
    except Exception as exc:
        # Damage found after the open-time check (a page read later): one sentence.
        from medialab_tui.store.db import damage_of

        damage = damage_of(exc, data.db_path) if data is not None else None
        if damage is None:
            raise
        print(f"medialab: {visible_lines(str(damage))}", file=sys.stderr)
        return damage.exit_code
    finally:
        if ctx is not None and ctx._store is not None:  # closed here when called in-process
            ctx._store.dispose()
