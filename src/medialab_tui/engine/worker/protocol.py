"""The worker protocol: one JSON object per line over the worker's stdin/stdout.

Commands (engine → worker): `run`, `cancel`, `unload`, `shutdown`.
Events (worker → engine): `ready`, `started`, `progress`, `artifact`, `done`,
`failed` (with a `kind`), `cancelled`, `unloaded`, and `heartbeat` every two
seconds from a thread of its own.

A `run` command is a `RunCommand`: the engine builds it from the store and the
worker validates it back into the same model, and the stage's parameters into the
stage's own parameter model, so nothing crosses the boundary untyped. This module
imports no torch: the engine side uses it too.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

FailureKind = Literal["validation", "oom", "missing_model", "disk_full", "internal"]
FAILURE_KINDS: tuple[str, ...] = ("validation", "oom", "missing_model", "disk_full", "internal")

COMMANDS = ("run", "cancel", "unload", "shutdown")
EVENTS = (
    "ready",
    "started",
    "progress",
    "artifact",
    "done",
    "failed",
    "cancelled",
    "unloaded",
    "heartbeat",
)


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Record(BaseModel):
    """Data the engine keeps in the store and sends on; records written by older
    versions may carry keys this one no longer reads."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class ModelRef(_Record):
    """A registry entry as a job needs it: where it is and what it is."""

    name: str
    path: str
    arch: str = "unknown"
    format: str = ""
    sha256: str | None = None
    demo: bool = False
    # A single-file checkpoint loads with the configs of a diffusers folder of its family.
    config_dir: str | None = None
    # A split transformer (registry kind `diffusion_model`): the files of its other
    # pipeline components (component → path); those not named come from `config_dir`.
    parts: dict[str, str] | None = None

    @property
    def short_hash(self) -> str | None:
        """The AutoV2 short hash model sites use (first 10 hex of sha256)."""
        return (self.sha256 or "")[:10] or None


class LoraUse(ModelRef):
    """A LoRA applied at a weight."""

    weight: float = 1.0


class ControlUse(ModelRef):
    """A ControlNet with its (stored) image and preprocessing."""

    image: str
    kind: Literal["canny", "none"] = "canny"
    scale: float = 1.0
    low: int = 100
    high: int = 200


class Extras(_Record):
    """What a stage needs beside its model, resolved at submit."""

    loras: list[LoraUse] = Field(default_factory=list)
    control: ControlUse | None = None
    detector: ModelRef | None = None
    # prompt_enhance: every wildcard list it can reach, read at submit.
    wildcards: dict[str, list[str]] | None = None
    # grid: the most pixels a sheet may have (config `max_output_pixels`, read at submit).
    max_pixels: int | None = None


class Item(_Record):
    """One input item of a job: a prompt with its seed, and the images or videos it
    starts from (stored copies of inputs, or the previous stage's outputs)."""

    prompt: str = ""
    negative: str = ""
    seed: int | None = None
    images: list[str] = Field(default_factory=list)
    videos: list[str] = Field(default_factory=list)
    parents: list[int] = Field(default_factory=list)
    # The prompt an output had before it was edited in review.
    edited_from: str | None = None
    # The sweep cell this job makes (its swept keys and values, with those of the cell
    # its input was made in); a stage that gathers gets one per image instead.
    cell: dict[str, Any] | None = None
    cells: list[dict[str, Any]] = Field(default_factory=list)


class RunCommand(_Message):
    """`run`: one job for the worker."""

    cmd: Literal["run"] = "run"
    job_id: int
    run_id: int
    stage: str
    stage_index: int = 0
    # The stage's validated parameters as plain data; the worker loads them into
    # the stage's parameter model (`StageSpec.params`).
    params: dict[str, Any]
    model: ModelRef | None = None
    extras: Extras = Field(default_factory=Extras)
    item: Item
    out_dir: str
    preview: bool = False


def encode(message: dict[str, Any] | BaseModel) -> bytes:
    """One message as a protocol line."""
    if isinstance(message, BaseModel):
        return message.model_dump_json(exclude_none=True).encode() + b"\n"
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


def decode(line: bytes | str) -> dict[str, Any]:
    """Parse one protocol line; raises ValueError on anything but a JSON object."""
    message = json.loads(line)
    if not isinstance(message, dict):
        raise ValueError("a protocol line must hold a JSON object")
    return message
