"""What every stage's worker side shares: the job being run and its way back to the engine.

A stage's `run.py` gets a `JobContext` and its own typed parameters. The context
checks for cancels, reports progress (with an occasional preview), saves outputs
atomically with their metadata and announces them; the engine indexes them when
the job is done. Imports no torch, so text stages stay light.
"""

from __future__ import annotations

import base64
import io
import threading
import time
from collections.abc import Callable, Iterable
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from medialab_tui import __version__
from medialab_tui.engine.worker.protocol import ModelRef, RunCommand
from medialab_tui.store.artifacts import (
    generation_of,
    infotext,
    read_png_meta_quietly,
    write_png,
    write_sidecar,
)
from medialab_tui.store.files import atomic_write_bytes

if TYPE_CHECKING:
    from PIL import Image

PREVIEW_INTERVAL_S = 0.5
SEED_SPACE = 2**32

# What a runner returns: extra fields of the `done` event (load time, cache hit).
Timings = dict[str, Any]
StepReporter = Callable[[int, int, Any], None]


class JobCancelled(Exception):
    """Raised from a step callback when the current job was cancelled."""


class JobFailed(Exception):
    """A failure with a kind from the protocol and a one-line message."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class Emitter(Protocol):
    def emit(self, event: str, **fields: Any) -> None: ...


class WorkerState(Protocol):
    """The parts of the worker a job uses."""

    last_step: int

    @property
    def channel(self) -> Emitter: ...

    @property
    def device(self) -> str: ...

    @property
    def dtype(self) -> Any: ...

    @property
    def cache(self) -> Any: ...

    @property
    def cancel_flag(self) -> threading.Event: ...


_UNREAD = object()  # `JobContext.origin` not looked up yet


class JobContext:
    """One job on the worker: its command (typed), the worker it runs on, and helpers."""

    def __init__(self, worker: WorkerState, command: RunCommand) -> None:
        self.worker = worker
        self.command = command
        self.item = command.item
        self.extras = command.extras
        self.out_dir = Path(command.out_dir)
        self._origin: object = _UNREAD

    # -- what the job is -------------------------------------------------------------

    @property
    def model(self) -> ModelRef:
        """The stage's model; stages that load one always have it (checked at submit)."""
        model = self.command.model
        if model is None:
            raise JobFailed("validation", f"stage {self.command.stage} was sent without a model")
        return model

    @property
    def device(self) -> str:
        return self.worker.device

    @property
    def dtype(self) -> Any:
        return self.worker.dtype

    @property
    def cache(self) -> Any:
        return self.worker.cache

    def seeds(self, count: int) -> list[int]:
        """`count` seeds from the item's: seed, seed + 1, …"""
        base = int(self.item.seed or 0)
        return [(base + i) % SEED_SPACE for i in range(count)]

    def negative(self, override: str | None) -> str:
        """The stage's own negative prompt, else the item's."""
        return self.item.negative if override is None else override

    # -- talking to the engine -------------------------------------------------------

    def check_cancel(self) -> None:
        if self.worker.cancel_flag.is_set():
            raise JobCancelled()

    def progress(self, step: int, total: int, **fields: Any) -> None:
        """Report `step` of `total` (after a cancel check)."""
        self.check_cancel()
        self.worker.last_step = step
        self.worker.channel.emit(
            "progress", job_id=self.command.job_id, step=step, total=total, **fields
        )

    def step_reporter(self, preview: Callable[[Any], Image.Image] | None) -> StepReporter:
        """The per-step callback: cancel check, progress event, an occasional preview."""
        last_preview = [0.0]

        def on_step(step: int, total: int, latents: Any) -> None:
            fields: dict[str, Any] = {}
            now = time.monotonic()
            if preview is not None and self.command.preview:
                if now - last_preview[0] >= PREVIEW_INTERVAL_S:
                    last_preview[0] = now
                    buf = io.BytesIO()
                    preview(latents).save(buf, format="PNG")
                    fields["preview"] = base64.b64encode(buf.getvalue()).decode()
            self.progress(step, total, **fields)

        return on_step

    def require_file(self, path: str | Path, what: str, kind: str = "validation") -> Path:
        """`path`, or a failure saying `what` is gone (inputs, models, LoRAs)."""
        found = Path(path)
        if not found.exists():
            raise JobFailed(kind, f"{what} is gone from {found}")
        return found

    # -- outputs ---------------------------------------------------------------------

    def base_meta(self, params: Any) -> dict[str, Any]:
        """The metadata every output of this job carries: stage, parameters, lineage."""
        command, model = self.command, self.command.model
        dumped = params.model_dump(exclude_none=True) if hasattr(params, "model_dump") else params
        return {
            "version": __version__,
            "run_id": command.run_id,
            "job_id": command.job_id,
            "stage": command.stage,
            "stage_index": command.stage_index,
            "params": dumped,
            "prompt": self.item.prompt,
            "negative": self.item.negative,
            "seed": self.item.seed,
            "parents": list(self.item.parents),
            "model": model.name if model else dumped.get("model", ""),
            "model_hash": model.short_hash if model else None,
            "model_sha256": (model.sha256 or None) if model else None,
            "origin": self.origin(),
            **({"cell": self.item.cell} if self.item.cell else {}),
        }

    def origin(self) -> dict[str, Any] | None:
        """The generation this job's first input descends from (its prompt, seed, steps,
        sampler, CFG, size, model and hash): what every output of a chain names in its
        infotext. None when the input was never generated (a user's photo) or there is
        no input."""
        if self._origin is _UNREAD:
            self._origin = None
            images, videos = list(self.item.images), list(self.item.videos)
            if images:
                self._origin = generation_of(read_png_meta_quietly(Path(images[0])))
            elif videos:
                from medialab_tui.store.videos import read_video_meta

                self._origin = generation_of(read_video_meta(Path(videos[0])))
        return self._origin  # type: ignore[return-value]

    def save_image(self, image: Image.Image, name: str, meta: dict[str, Any]) -> None:
        """Write `image` as `<name>.png` with its metadata chunks, then announce it."""
        path = self.out_dir / f"{name}.png"
        meta = {**meta, "width": image.width, "height": image.height, "name": name}
        write_png(path, image, meta)
        self.announce(path, "image", meta, width=image.width, height=image.height)

    def save_video(
        self,
        frames: Iterable[Any],
        name: str,
        meta: dict[str, Any],
        *,
        fps: Fraction,
        frame_count: int,
        size: tuple[int, int],
        audio_from: Path | None = None,
    ) -> Path:
        """Write `frames` (RGB arrays or PIL images, `frame_count` of them, `size` each)
        as `<name>.mp4` at exactly `fps`, with a first-frame thumbnail
        `<name>.thumb.png`, then announce it. `meta` goes into the container's comment
        tag and the sidecar."""
        from medialab_tui.store.videos import first_frame, write_video

        fps = Fraction(fps)
        width, height = size[0] // 2 * 2, size[1] // 2 * 2
        path = self.out_dir / f"{name}.mp4"
        meta = {
            **meta,
            "name": name,
            "width": width,
            "height": height,
            "frames": frame_count,
            "fps": float(fps),
            "fps_exact": f"{fps.numerator}/{fps.denominator}",
            "duration": float(frame_count / fps),
        }
        # A1111's infotext too, so a video names its generation as its images do.
        meta["parameters"] = infotext(meta)
        written = write_video(path, frames, fps, meta=meta, audio_from=audio_from)
        if written != frame_count:
            path.unlink(missing_ok=True)
            raise JobFailed("internal", f"{name}.mp4 got {written} frames, not {frame_count}")
        buf = io.BytesIO()
        first_frame(path).save(buf, format="PNG")
        atomic_write_bytes(path.with_suffix(".thumb.png"), buf.getvalue())
        self.announce(path, "video", meta, width=width, height=height)
        return path

    def announce(self, path: Path, kind: str, meta: dict[str, Any], **fields: Any) -> None:
        """Write the output's sidecar and tell the engine about it (it indexes it when the
        job is done)."""
        write_sidecar(path, meta)
        self.worker.channel.emit(
            "artifact",
            job_id=self.command.job_id,
            path=str(path),
            name=meta["name"],
            kind=kind,
            seed=meta.get("seed"),
            meta=meta,
            **fields,
        )
