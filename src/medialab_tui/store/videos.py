"""Video files: probing inputs, reading frames, writing H.264 MP4 artifacts.

Everything goes through PyAV (`av`, whose wheels ship FFmpeg with libx264), so no
ffmpeg binary is needed. Frame rates are `Fraction`s end to end: 29.97 fps is
30000/1001, and twice it is exactly 60000/1001.

Written videos are H.264 yuv420p with even dimensions, `+faststart` (the index at
the front, so a player starts before the whole file has arrived), the `medialab`
JSON in the container's `comment` tag, written to a temporary name in the same
folder and renamed into place. Importing this module does not import `av`.
"""

from __future__ import annotations

import itertools
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medialab_tui.errors import MedialabError

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

# File suffixes `[inputs] videos` and the gallery treat as videos.
VIDEO_SUFFIXES = (".mp4", ".mov", ".webm", ".mkv", ".m4v", ".avi")
# Quality of written videos (x264's constant rate factor: 0 lossless, 18 visually
# lossless, 23 its default).
DEFAULT_CRF = 18


class BadVideo(MedialabError):
    """A file that cannot be used as a video: not one, no video stream, truncated."""

    exit_code = 2


@dataclass(frozen=True)
class VideoInfo:
    """What a video file holds, from its video stream (and whether it has audio)."""

    path: Path
    fps: Fraction  # the stream's average rate (constant-rate files: the rate)
    frames: int  # frames decoded (not the header's guess)
    width: int
    height: int
    codec: str
    has_audio: bool
    # True when the frames' timestamps are not evenly spaced at `fps`.
    variable_rate: bool
    comment: str = ""

    @property
    def duration(self) -> float:
        """Seconds: frames at the frame rate."""
        return float(self.frames / self.fps) if self.fps else 0.0

    def meta(self) -> dict[str, Any]:
        """The `medialab` JSON a video we wrote carries (empty for other videos)."""
        try:
            found = json.loads(self.comment) if self.comment else {}
        except ValueError:
            return {}
        return found if isinstance(found, dict) else {}


def fps_text(fps: Fraction) -> str:
    """`25`, `29.97 (30000/1001)`: the rate for sentences."""
    if fps.denominator == 1:
        return str(fps.numerator)
    return f"{float(fps):.3f}".rstrip("0").rstrip(".") + f" ({fps.numerator}/{fps.denominator})"


def as_fraction(value: float | int | str | Fraction) -> Fraction:
    """A frame rate as a rational: the NTSC rates (23.976, 29.97, 59.94, 119.88) as
    their exact /1001 forms, anything else as the nearest fraction with a small
    denominator."""
    if isinstance(value, Fraction):
        return value
    if isinstance(value, str) and "/" in value:
        return Fraction(value)
    number = float(value)
    for base in (24, 30, 48, 60, 120, 240):
        ntsc = Fraction(base * 1000, 1001)
        if abs(number - float(ntsc)) < 0.006:
            return ntsc
    return Fraction(number).limit_denominator(1001)


def probe_video(path: Path, *, max_frames: int | None = None) -> VideoInfo:
    """Open `path` and decode its video stream to count its frames.

    Raises BadVideo (one sentence naming the file) when it is not a video, holds no
    video stream, or stops partway (truncated, damaged), or when it has more than
    `max_frames` frames.
    """
    import av

    name = str(path)
    try:
        container = av.open(name)
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise BadVideo(f"{name} is not a video file ({_reason(exc)})") from None
    with container:
        if not container.streams.video:
            raise BadVideo(f"{name} has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        times: list[Fraction] = []
        width = height = 0
        try:
            for frame in container.decode(stream):
                if frame.pts is not None and frame.time_base is not None:
                    times.append(frame.pts * frame.time_base)
                width, height = frame.width, frame.height
                if max_frames is not None and len(times) > max_frames:
                    raise BadVideo(
                        f"{name} has more than {max_frames} frames, the configured "
                        "'max_video_frames'"
                    )
        except av.error.FFmpegError as exc:
            raise BadVideo(f"{name} is truncated or damaged ({_reason(exc)})") from None
        if not times:
            raise BadVideo(f"{name} holds no video frames (truncated or empty)")
        if _truncated(container, stream, len(times)):
            raise BadVideo(
                f"{name} is truncated: it holds {len(times)} of the {stream.frames} "
                "frames its header lists"
            )
        fps = Fraction(rate) if rate else Fraction(25)
        return VideoInfo(
            path=path,
            fps=fps,
            frames=len(times),
            width=width,
            height=height,
            codec=stream.codec_context.name,
            has_audio=bool(container.streams.audio),
            variable_rate=_uneven(times, fps),
            comment=str(container.metadata.get("comment", "")),
        )


def _reason(exc: BaseException) -> str:
    return (getattr(exc, "strerror", None) or str(exc)).strip().rstrip(".").lower()


def _truncated(container: Any, stream: Any, decoded: int) -> bool:
    """MP4/MOV headers list every frame; a file cut short decodes fewer."""
    listed = int(stream.frames or 0)
    return container.format.name.startswith("mov") and listed > 0 and decoded < listed


def _uneven(times: list[Fraction], fps: Fraction) -> bool:
    """True when frame timestamps stray from a constant `fps` by over a quarter frame."""
    if len(times) < 3 or not fps:
        return False
    step = 1 / fps
    ordered = sorted(times)
    start = ordered[0]
    return any(abs((t - start) - i * step) > step / 4 for i, t in enumerate(ordered))


def read_frames(path: Path) -> Iterator[tuple[Fraction, np.ndarray]]:
    """Each frame of the first video stream as (seconds from the first frame, RGB
    uint8 array), in presentation order."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        start: Fraction | None = None
        for frame in container.decode(stream):
            at = frame.pts * frame.time_base if frame.pts is not None else Fraction(0)
            start = at if start is None else start
            yield at - start, frame.to_ndarray(format="rgb24")


def first_frame(path: Path) -> Image.Image:
    """The first frame of a video, as a PIL image (thumbnails, the inspector)."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            image: Image.Image = frame.to_image()
            return image
    raise BadVideo(f"{path} holds no video frames")


def write_video(
    path: Path,
    frames: Iterable[np.ndarray | Image.Image],
    fps: Fraction,
    *,
    meta: dict[str, Any] | None = None,
    audio_from: Path | None = None,
    crf: int = DEFAULT_CRF,
) -> int:
    """Encode `frames` (RGB) into an H.264 MP4 at exactly `fps`, atomically.

    Odd widths or heights lose their last column or row (yuv420p needs even ones).
    `meta` goes into the `comment` tag as JSON; `audio_from` copies that file's first
    audio track, unchanged, when it has one. Returns the number of frames written.
    """
    import av
    import numpy as np

    fps = Fraction(fps)
    pictures = iter(frames)
    first = next(pictures, None)
    if first is None:
        raise BadVideo(f"{path} would hold no frames")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".partial.mp4", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    count = 0
    try:
        with av.open(tmp_name, "w", format="mp4", options={"movflags": "+faststart"}) as output:
            if meta is not None:
                output.metadata["comment"] = json.dumps(meta, sort_keys=True)
            shape = _rgb(first).shape
            height, width = shape[0] // 2 * 2, shape[1] // 2 * 2
            stream = output.add_stream("libx264", rate=fps)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.time_base = 1 / fps
            stream.codec_context.time_base = 1 / fps
            stream.options = {"crf": str(crf), "preset": "medium"}
            # Every stream is added before the first packet: the header lists them.
            audio = _AudioCopy(audio_from, output) if audio_from is not None else None
            try:
                for picture in itertools.chain([first], pictures):
                    array = _rgb(picture)[:height, :width]
                    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format="rgb24")
                    frame.pts = count
                    frame.time_base = 1 / fps
                    output.mux(stream.encode(frame))
                    count += 1
                output.mux(stream.encode(None))
                if audio is not None:
                    audio.copy(until=Fraction(count) / fps)
            finally:
                if audio is not None:
                    audio.close()
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return count


def _rgb(picture: np.ndarray | Image.Image) -> np.ndarray:
    import numpy as np

    if hasattr(picture, "convert"):
        return np.asarray(picture.convert("RGB"))
    array = np.asarray(picture)
    return array[:, :, :3] if array.ndim == 3 else np.stack([array] * 3, axis=-1)


class _AudioCopy:
    """The first audio track of a source file, remuxed unchanged (no re-encode)."""

    def __init__(self, source: Path, output: Any) -> None:
        import av

        self.container = av.open(str(source))
        self.source: Any = None
        self.target: Any = None
        if self.container.streams.audio:
            source_stream = self.container.streams.audio[0]
            try:
                self.target = output.add_stream_from_template(source_stream)
                self.source = source_stream
            except (ValueError, av.error.FFmpegError):
                pass  # a codec MP4 cannot hold: the video goes out without it
        self.output = output

    def copy(self, until: Fraction) -> None:
        """Every packet that starts before `until` seconds (the video's end)."""
        if self.source is None:
            return
        for packet in self.container.demux(self.source):
            if packet.dts is None:
                continue
            if packet.pts is not None and packet.pts * packet.time_base >= until:
                break
            packet.stream = self.target
            self.output.mux(packet)

    def close(self) -> None:
        self.container.close()


def read_video_meta(path: Path) -> dict[str, Any]:
    """The `medialab` JSON in a video's `comment` tag (empty when it has none); reads
    the container's header only."""
    import av

    try:
        with av.open(str(path)) as container:
            text = str(container.metadata.get("comment", ""))
    except (av.error.FFmpegError, OSError):
        return {}
    try:
        found = json.loads(text) if text else {}
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}
