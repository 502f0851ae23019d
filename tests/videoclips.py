"""Tiny real video files for tests: written with PyAV (through `store.videos` where it
can), small enough to make in milliseconds: 64×48, a handful of frames."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from medialab_tui.config import DataDir
from medialab_tui.store.artifacts import write_sidecar
from medialab_tui.store.db import Store
from medialab_tui.store.tables import Artifact, ArtifactParent, Job, Run
from medialab_tui.store.videos import first_frame, write_video

WIDTH, HEIGHT = 64, 48


def moving_bar(count: int, width: int = WIDTH, height: int = HEIGHT) -> list[np.ndarray]:
    """`count` frames of a bright bar moving right over a gradient: real motion."""
    yy, xx = np.mgrid[0:height, 0:width]
    frames = []
    for i in range(count):
        frame = np.stack([xx * 3, yy * 4, np.full_like(xx, 60)], axis=-1).astype(np.uint8)
        left = (i * 3) % (width - 8)
        frame[:, left : left + 8] = 255
        frames.append(frame)
    return frames


def clip(path: Path, count: int, fps: Fraction, audio_from: Path | None = None) -> Path:
    """A constant-rate H.264 clip of `count` moving-bar frames at exactly `fps`."""
    write_video(path, moving_bar(count), fps, audio_from=audio_from)
    return path


def audio_only(path: Path, seconds: float = 1.0) -> Path:
    """An AAC file with a 440 Hz tone and no video stream."""
    import av

    rate = 48_000
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("aac", rate=rate)
        samples = int(rate * seconds)
        tone = (0.2 * np.sin(2 * np.pi * 440 * np.arange(samples) / rate)).astype(np.float32)
        step = 1024
        for start in range(0, samples, step):
            piece = tone[start : start + step].reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(piece, format="fltp", layout="mono")
            frame.sample_rate = rate
            frame.pts = start
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def variable_rate(path: Path, times_ms: list[int]) -> Path:
    """An H.264 clip whose frames stand at `times_ms` (unevenly spaced)."""
    import av

    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.time_base = Fraction(1, 1000)
        stream.codec_context.time_base = Fraction(1, 1000)
        for at, picture in zip(times_ms, moving_bar(len(times_ms)), strict=True):
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
            frame.pts, frame.time_base = at, Fraction(1, 1000)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def truncated(source: Path, path: Path) -> Path:
    """The first half of `source`'s bytes: an MP4 cut off partway."""
    data = source.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


class Videos:
    """Runs, jobs and video artifacts written into a data directory's store."""

    def __init__(self, root: Path) -> None:
        self.data = DataDir(root).ensure()
        self.store = Store(self.data.db_path)

    def add(self, row: Any) -> Any:
        with self.store.write() as s:
            s.add(row)
            s.flush()
            s.expunge(row)
        return row

    def video(
        self,
        stage: str,
        frames: list[np.ndarray],
        fps: Fraction,
        *,
        prompt: str = "a lighthouse at dusk",
        parent: Artifact | None = None,
        clip: Path | None = None,
    ) -> Artifact:
        """A video as a video job leaves it: the mp4, its thumbnail and sidecar, its row."""
        params = {"type": stage, "model": "demo-svd"} if stage == "i2v" else {"type": stage}
        run = self.add(
            Run(
                name=stage,
                pipeline={"stages": [params]},
                stage_count=1,
                status="succeeded",
            )
        )
        job = self.add(
            Job(
                run_id=run.id,
                stage_index=0,
                stage=stage,
                item={
                    "prompt": prompt,
                    "seed": 5,
                    "parents": [parent.id] if parent else [],
                    **({"videos": [str(clip)]} if clip else {}),
                },
                params=params,
                status="succeeded",
            )
        )
        folder = self.data.artifacts / f"r{run.id}" / f"j{job.id}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "5.mp4"
        height, width = frames[0].shape[:2]
        meta = {
            "stage": stage,
            "params": params,
            "prompt": prompt,
            "seed": 5,
            "parents": [parent.id] if parent else [],
            "model": params.get("model", ""),
            "name": "5",
            "width": width,
            "height": height,
            "frames": len(frames),
            "fps": float(fps),
            "fps_exact": f"{fps.numerator}/{fps.denominator}",
            "duration": float(len(frames) / fps),
        }
        write_video(path, frames, fps, meta=meta)
        write_sidecar(path, meta)
        first_frame(path).save(folder / "5.thumb.png")
        artifact = self.add(
            Artifact(
                run_id=run.id,
                job_id=job.id,
                stage=stage,
                kind="video",
                path=str(path),
                name="5",
                prompt=prompt,
                seed=5,
                model=meta["model"],
                width=width,
                height=height,
                params=meta,
            )
        )
        if parent is not None:
            self.add(ArtifactParent(artifact_id=artifact.id, parent_id=parent.id))
        return artifact
