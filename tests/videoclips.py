"""Tiny real video files for tests: written with PyAV (through `store.videos` where it
can), small enough to make in milliseconds: 64×48, a handful of frames."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

from medialab_tui.store.videos import write_video

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
