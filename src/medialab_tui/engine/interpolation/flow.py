"""Frame interpolation by optical flow (OpenCV DIS), and plain blending as a baseline.

`FlowInterpolator.between(a, b, times)` makes the frames that lie between two
consecutive frames:

1. Dense flow both ways (a→b and b→a) with OpenCV's DIS, on grey frames shrunk
   so the long side is at most `flow_side` pixels; the flow fields are cheap to
   enlarge afterwards, and the motion of real footage is smooth enough that the
   lost detail costs little.
2. A forward-backward check: where following a→b and then b→a does not come
   back to the start, the pixel is hidden in the other frame (occluded), and
   that frame's contribution there is turned down.
3. For each time t, the flow from t back to each frame (the Super SloMo
   approximation from the two flows), both frames warped to t with `cv2.remap`,
   and a blend weighted by closeness in time and by visibility.
4. A scene cut (the frames have little in common) is held, not morphed: the
   frames before t = 0.5 repeat `a`, those after repeat `b`.

Everything at flow resolution (flows, the check, the weights) stays small; only
the two warps and the blend run at full size.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}

# DIS needs patches to match: frames (or flow sizes) thinner than this are blended.
_MIN_FLOW_SIDE = 16
# Side of the thumbnails the scene-cut test compares.
_CUT_THUMB = 64
_HIST_BINS = 32


def blend(a: np.ndarray, b: np.ndarray, times: Sequence[float]) -> list[np.ndarray]:
    """Plain cross-fade: ``(1 - t)·a + t·b`` for each time (ffmpeg's ``framerate``
    filter, or ``minterpolate`` with ``mi_mode=blend``)."""
    fa, fb = a.astype(np.float32), b.astype(np.float32)
    return [_to_uint8(fa * (1.0 - t) + fb * t) for t in times]


def hold(a: np.ndarray, b: np.ndarray, times: Sequence[float]) -> list[np.ndarray]:
    """The nearest frame for each time: ``a`` before the midpoint, ``b`` from it."""
    return [(a if t < 0.5 else b).copy() for t in times]


@dataclass(frozen=True)
class CutScore:
    """How different two frames are, on small grey thumbnails."""

    # Mean absolute difference of the thumbnails, 0 (equal) to 1.
    difference: float
    # Bhattacharyya distance of their grey histograms, 0 (same) to 1 (disjoint).
    histogram: float


class FlowInterpolator:
    """Motion-compensated frame interpolation with DIS optical flow.

    Options (keywords; the defaults are the ones measured best for quality at
    speed on 1280×720 footage by `benchmarks/interpolate.py`):

    - ``preset``: DIS speed/quality preset, ``ultrafast``, ``fast`` or ``medium``;
    - ``flow_side``: the longest side flow is computed at (frames larger than this
      are shrunk for the flow only; the output keeps the input's size);
    - ``occlusion``: forward-backward error, in flow pixels, at which a pixel's
      weight has fallen to about a third (smaller trusts the flow less);
    - ``cut_difference`` / ``cut_histogram``: a pair of frames whose thumbnails
      differ by more than ``cut_difference`` (mean, 0–1) and whose histograms by
      more than ``cut_histogram`` (Bhattacharyya, 0–1) is a scene cut; also a
      cut when the histogram distance alone exceeds ``2 × cut_histogram``.
    """

    def __init__(
        self,
        *,
        preset: str = "fast",
        flow_side: int = 400,
        occlusion: float = 8.0,
        cut_difference: float = 0.2,
        cut_histogram: float = 0.3,
    ) -> None:
        if preset not in PRESETS:
            raise ValueError(f"preset must be one of {', '.join(PRESETS)}, not {preset!r}")
        if flow_side < 16:
            raise ValueError(f"flow_side must be at least 16, not {flow_side}")
        self.preset = preset
        self.flow_side = flow_side
        self.occlusion = occlusion
        self.cut_difference = cut_difference
        self.cut_histogram = cut_histogram
        self._dis = cv2.DISOpticalFlow_create(PRESETS[preset])
        # Refine down to flow resolution itself: `flow_side` is the finest scale.
        self._dis.setFinestScale(0)

    def flow_shape(self, height: int, width: int) -> tuple[int, int]:
        """The (height, width) flow is computed at for frames of this size."""
        scale = min(1.0, self.flow_side / max(height, width))
        return max(1, round(height * scale)), max(1, round(width * scale))

    def cut_score(self, a: np.ndarray, b: np.ndarray) -> CutScore:
        """How different ``a`` and ``b`` are (see `is_cut`)."""
        ta, tb = _thumb(a), _thumb(b)
        difference = float(np.mean(cv2.absdiff(ta, tb))) / 255.0
        ha, hb = _histogram(ta), _histogram(tb)
        histogram = float(cv2.compareHist(ha, hb, cv2.HISTCMP_BHATTACHARYYA))
        return CutScore(difference, histogram)

    def is_cut(self, a: np.ndarray, b: np.ndarray) -> bool:
        """True when ``a`` and ``b`` belong to different shots."""
        score = self.cut_score(a, b)
        if score.histogram > 2 * self.cut_histogram:
            return True
        return score.difference > self.cut_difference and score.histogram > self.cut_histogram

    def between(self, a: np.ndarray, b: np.ndarray, times: Sequence[float]) -> list[np.ndarray]:
        """The frames at fractions ``times`` (each in (0, 1)) of the way from ``a`` to ``b``.

        ``a`` and ``b`` are consecutive HxWx3 uint8 RGB frames of one size; one
        uint8 RGB frame of that size comes back per time. A scene cut is held;
        frames under 16 pixels on a side (too small to track) are cross-faded.
        Not thread-safe: one interpolator per thread.
        """
        _check_pair(a, b, times)
        if not times:
            return []
        if self.is_cut(a, b):
            return hold(a, b, times)
        height, width = a.shape[:2]
        fh, fw = self.flow_shape(height, width)
        if min(fh, fw) < _MIN_FLOW_SIDE:
            return blend(a, b, times)
        ga, gb = _grey(a, fw, fh), _grey(b, fw, fh)
        f01 = self._dis.calc(ga, gb, None)
        f10 = self._dis.calc(gb, ga, None)
        grid = _grid(fh, fw)
        # Visibility of each frame's pixels in the other (1 visible, → 0 occluded).
        v0 = self._visibility(f01, f10, grid)
        v1 = self._visibility(f10, f01, grid)
        full = (fh, fw) != (height, width)
        full_grid = _grid(height, width) if full else grid
        out = []
        for t in times:
            ft0, ft1 = self._flows_from(t, f01, f10)
            w0 = (1.0 - t) * _remap(v0, grid + ft0)
            w1 = t * _remap(v1, grid + ft1)
            w0 = w0 / (w0 + w1 + 1e-6)
            if full:
                ft0, ft1 = _enlarge(ft0, width, height), _enlarge(ft1, width, height)
                w0 = cv2.resize(w0, (width, height), interpolation=cv2.INTER_LINEAR)
            warped0 = _remap(a, cv2.add(full_grid, ft0))
            warped1 = _remap(b, cv2.add(full_grid, ft1))
            out.append(cv2.blendLinear(warped0, warped1, w0, 1.0 - w0))
        return out

    def _flows_from(
        self, t: float, f01: np.ndarray, f10: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Flow from the frame at t back to each end: Super SloMo's estimate from
        the two flows, which assumes the motion field varies slowly. (Refining it
        by fixed-point steps on x = p + t·F01(p) measured no better on real
        footage, where motion boundaries make the steps oscillate.)"""
        ft0 = -(1.0 - t) * t * f01 + t * t * f10
        ft1 = (1.0 - t) * (1.0 - t) * f01 - t * (1.0 - t) * f10
        return ft0, ft1

    def _visibility(
        self, forward: np.ndarray, backward: np.ndarray, grid: np.ndarray
    ) -> np.ndarray:
        """1 where going ``forward`` then ``backward`` comes back home, falling to 0
        as the round trip misses (the pixel is occluded in the other frame)."""
        back = _remap(backward, grid + forward)
        error = np.sum((forward + back) ** 2, axis=2)
        # The tolerance grows with the motion: large flows are less exact.
        motion = np.sum(forward**2, axis=2) + np.sum(back**2, axis=2)
        tolerance = self.occlusion**2 + 0.01 * motion
        return np.exp(-error / tolerance).astype(np.float32)


def _check_pair(a: np.ndarray, b: np.ndarray, times: Sequence[float]) -> None:
    for name, frame in (("a", a), ("b", b)):
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(
                f"frame {name} must be HxWx3 uint8 RGB, not {frame.shape} {frame.dtype}"
            )
    if a.shape != b.shape:
        raise ValueError(
            f"frames differ in size: {a.shape[1]}x{a.shape[0]} and {b.shape[1]}x{b.shape[0]}"
        )
    for t in times:
        if not 0.0 < t < 1.0:
            raise ValueError(f"interpolation times lie strictly between 0 and 1, not {t}")


def _grey(frame: np.ndarray, width: int, height: int) -> np.ndarray:
    grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    if grey.shape != (height, width):
        grey = cv2.resize(grey, (width, height), interpolation=cv2.INTER_AREA)
    return grey


def _thumb(frame: np.ndarray) -> np.ndarray:
    grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    return cv2.resize(grey, (_CUT_THUMB, _CUT_THUMB), interpolation=cv2.INTER_AREA)


def _histogram(thumb: np.ndarray) -> np.ndarray:
    hist = cv2.calcHist([thumb], [0], None, [_HIST_BINS], [0, 256])
    return cv2.normalize(hist, hist).astype(np.float32)


@functools.lru_cache(maxsize=4)
def _grid(height: int, width: int) -> np.ndarray:
    """Each pixel's own (x, y), as float32 HxWx2 (shared: never write to it)."""
    xs, ys = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    grid = np.dstack((xs, ys))
    grid.flags.writeable = False
    return grid


def _remap(image: np.ndarray, where: np.ndarray) -> np.ndarray:
    """``image`` sampled at ``where`` (HxWx2 x, y), bilinear, edges repeated."""
    return cv2.remap(
        image, where[..., 0], where[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )


def _enlarge(flow: np.ndarray, width: int, height: int) -> np.ndarray:
    """A flow field computed on shrunk frames, resized and rescaled to full size."""
    # Scaled while small: resizing is linear, so the order does not matter.
    scale = np.array([width / flow.shape[1], height / flow.shape[0]], np.float32)
    return cv2.resize(flow * scale, (width, height), interpolation=cv2.INTER_LINEAR)


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(image + 0.5, 0, 255).astype(np.uint8)
