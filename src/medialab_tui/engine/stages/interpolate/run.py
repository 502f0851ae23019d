"""The `interpolate` stage in the worker: a video at m times its frame rate.

The source is read frame by frame (never all at once). A variable-rate clip is
first resampled to a constant rate (`stages.base.constant_rate`): at each tick of
that rate the source frame nearest in time is taken. Between each two consecutive
frames the interpolator (`flow`, or a registered learned model) makes m − 1 frames
at times 1/m … (m − 1)/m; progress is reported, and a cancel checked, once per pair.

Duration is kept exactly: N source frames at rate r (N/r seconds) become N·m frames
at m·r. The last source frame has no frame after it to move towards, so it is held
for its m output frames. The audio track, when there is one, is copied unchanged.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from medialab_tui.engine.stages.base import constant_rate
from medialab_tui.engine.stages.interpolate.spec import FLOW, InterpolateParams, rate_words
from medialab_tui.engine.worker.context import JobContext, JobFailed, Timings
from medialab_tui.store.videos import BadVideo, VideoInfo, fps_text, probe_video, read_frames

if TYPE_CHECKING:
    import numpy as np


class Interpolator(Protocol):
    """What both methods offer: the frames at `times` (each in (0, 1)) between two
    consecutive RGB uint8 frames of one size."""

    def between(self, a: np.ndarray, b: np.ndarray, times: Sequence[float]) -> list[np.ndarray]:
        """One frame per time."""
        ...


def run(job: JobContext, params: InterpolateParams) -> Timings:
    """Interpolate every video of the job's item; one output each."""
    sources = [job.require_file(p, "the input video") for p in job.item.videos]
    if not sources:
        raise JobFailed("validation", "interpolate was sent no video (it takes videos)")
    job.check_cancel()
    interpolator, hit, load_seconds = load_interpolator(job, params)
    base = job.base_meta(params)
    for index, source in enumerate(sources):
        _interpolate(job, params, interpolator, source, index, base)
    return {"load_seconds": round(load_seconds, 4), "cache_hit": hit}


def _interpolate(
    job: JobContext,
    params: InterpolateParams,
    interpolator: Interpolator,
    source: Path,
    index: int,
    base: dict[str, Any],
) -> None:
    try:
        info = probe_video(source)
    except BadVideo as exc:
        raise JobFailed("validation", str(exc)) from None
    rate = constant_rate(info)
    factor = params.factor(rate)
    target = rate * factor
    if params.target is not None and target != params.target:
        # Checked at submit against the rate the clip was planned to have.
        raise JobFailed(
            "validation",
            f"{source.name} plays at {fps_text(rate)} fps; {rate_words(params.target)} fps "
            "is not an integer multiple of it",
        )
    count, frames = source_frames(source, info, rate)
    times = [k / factor for k in range(1, factor)]
    meta = {
        **base,
        "model": base["model"] or params.method,
        "method": params.method,
        "multiplier": factor,
        "source_video": str(source),
        "source_fps": float(rate),
        "source_fps_exact": f"{rate.numerator}/{rate.denominator}",
        "source_frames": count,
        "resampled": info.variable_rate,
        "last_frame": "held",
    }
    job.save_video(
        _frames_out(job, interpolator, frames, count, factor, times),
        f"{index:02d}-x{factor}",
        meta,
        fps=target,
        frame_count=count * factor,
        size=(info.width, info.height),
        audio_from=source,
    )


def _frames_out(
    job: JobContext,
    interpolator: Interpolator,
    frames: Iterator[np.ndarray],
    count: int,
    factor: int,
    times: list[float],
) -> Iterator[np.ndarray]:
    """Each source frame followed by the m − 1 frames between it and the next; the
    last source frame held m times."""
    pairs = max(1, count - 1)
    previous = None
    done = 0
    for frame in frames:
        if previous is not None:
            yield previous
            yield from interpolator.between(previous, frame, times)
            done += 1
            job.progress(done, pairs)
        previous = frame
    if previous is None:
        raise JobFailed("validation", "the input video holds no frames")
    for _ in range(factor):
        yield previous
    if count == 1:
        job.progress(1, 1)


def source_frames(path: Path, info: VideoInfo, rate: Fraction) -> tuple[int, Iterator[np.ndarray]]:
    """How many frames the source has at the constant `rate`, and those frames.

    A constant-rate clip is read as it is. A variable-rate one is resampled: its
    timestamps are read first, then at each tick k/rate (k = 0 … round(last · rate))
    the frame nearest in time is taken (the later one on a tie)."""
    if not info.variable_rate:
        return info.frames, (frame for _, frame in read_frames(path))
    last = max(at for at, _ in read_frames(path))
    count = round(last * rate) + 1
    return count, _resampled(read_frames(path), rate, count)


def _resampled(
    frames: Iterator[tuple[Fraction, np.ndarray]], rate: Fraction, count: int
) -> Iterator[np.ndarray]:
    current = next(frames)
    following = next(frames, None)
    for k in range(count):
        at = Fraction(k) / rate
        while following is not None and following[0] - at <= at - current[0]:
            current, following = following, next(frames, None)
        yield current[1]


@dataclass
class LoadedInterpolator:
    """A learned interpolator as the worker's cache holds it."""

    model: Any

    @property
    def components(self) -> dict[str, Any]:
        """The torch modules held, by name: what the cache's memory estimate counts."""
        return {"net": self.model.net}

    def between(self, a: np.ndarray, b: np.ndarray, times: Sequence[float]) -> list[np.ndarray]:
        frames: list[np.ndarray] = self.model.between(a, b, times)
        return frames


def load_interpolator(
    job: JobContext, params: InterpolateParams
) -> tuple[Interpolator, bool, float]:
    """The stage's interpolator: the built-in flow one, or the registered model from the
    worker's cache (loaded on a miss). Returns (interpolator, cache hit, seconds spent)."""
    if params.method == FLOW:
        from medialab_tui.engine.interpolation.flow import FlowInterpolator

        return FlowInterpolator(), True, 0.0
    model = job.model
    path = job.require_file(model.path, f"model '{model.name}'", "missing_model")
    t0 = time.perf_counter()
    loaded, hit = job.cache.get((str(path), "interpolator"), lambda: _load(job, path))
    job.check_cancel()
    return loaded, hit, time.perf_counter() - t0


def _load(job: JobContext, path: Path) -> LoadedInterpolator:
    from medialab_tui.engine.interpolation.learned import load_interpolator as load_model

    try:
        return LoadedInterpolator(load_model(path, job.device, job.dtype))
    except ValueError as exc:
        raise JobFailed("validation", f"model '{job.model.name}': {exc}") from None
