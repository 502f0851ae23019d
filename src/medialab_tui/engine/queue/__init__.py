"""The queue: requests any process may make (`requests`), the run state machine
(`runstate`), input resolution at submit (`resolve`), ids (`refs`) and re-runs
(`rerun`). Writes to the store only; the engine host runs what is queued."""

from medialab_tui.engine.queue.refs import get, get_row, parse_ref
from medialab_tui.engine.queue.requests import (
    QUEUE_KEY,
    approve,
    cancel,
    queue_state,
    retry,
    set_priority,
    set_queue_state,
    submit,
)
from medialab_tui.engine.queue.resolve import (
    LARGE_RUN_JOBS,
    WORKER_KEY,
    Prepared,
    prepare,
    queue_device,
)
from medialab_tui.engine.queue.runstate import (
    advance_run,
    finish_stage_if_done,
    stage_outputs,
)

__all__ = [
    "LARGE_RUN_JOBS",
    "QUEUE_KEY",
    "WORKER_KEY",
    "Prepared",
    "advance_run",
    "approve",
    "cancel",
    "finish_stage_if_done",
    "get",
    "get_row",
    "parse_ref",
    "prepare",
    "queue_device",
    "queue_state",
    "retry",
    "set_priority",
    "set_queue_state",
    "stage_outputs",
    "submit",
]
