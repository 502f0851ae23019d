"""Frame interpolation: optical flow against blending on moving patterns, scene cuts
held, reduced flow resolution for large frames, and the learned RIFE interpolator
(the demo model, pickles refused, the registry's kind)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from safetensors.numpy import save_file

from conftest import Home
from medialab_tui.config import DataDir, load_config
from medialab_tui.engine import registry
from medialab_tui.engine.demo.interpolator import DEMO_RIFE, write_demo_interpolator
from medialab_tui.engine.interpolation.flow import FlowInterpolator, blend
from medialab_tui.engine.interpolation.metrics import psnr
from medialab_tui.store.db import Store

SIZE = 64
MARGIN_DB = 3.0


def texture(height: int, width: int, seed: int = 0, blur: float = 2.0) -> np.ndarray:
    """Smooth random colour texture (flow needs something to hold on to)."""
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    return cv2.GaussianBlur(noise, (0, 0), blur)


def moving(canvas: np.ndarray, shifts: list[int], size: int = SIZE) -> list[np.ndarray]:
    """Windows of ``canvas`` moved right and down by each shift (the camera pans)."""
    return [canvas[s : s + size, s : s + size].copy() for s in shifts]


@pytest.fixture(scope="module")
def canvas() -> np.ndarray:
    return texture(SIZE + 16, SIZE + 16)


def test_flow_restores_a_moving_pattern_better_than_blending(canvas: np.ndarray) -> None:
    a, middle, b = moving(canvas, [0, 3, 6])
    made = FlowInterpolator().between(a, b, [0.5])[0]
    faded = blend(a, b, [0.5])[0]
    assert made.shape == a.shape and made.dtype == np.uint8
    assert psnr(made, middle) > psnr(faded, middle) + MARGIN_DB


def test_three_times_makes_two_frames_in_order(canvas: np.ndarray) -> None:
    a, first, second, b = moving(canvas, [0, 2, 4, 6])
    made = FlowInterpolator().between(a, b, [1 / 3, 2 / 3])
    faded = blend(a, b, [1 / 3, 2 / 3])
    assert len(made) == 2
    for frame, real, fade in zip(made, (first, second), faded, strict=True):
        assert psnr(frame, real) > psnr(fade, real) + MARGIN_DB
    # Each frame is nearer its own time than the other's.
    assert psnr(made[0], first) > psnr(made[0], second)
    assert psnr(made[1], second) > psnr(made[1], first)


def test_scene_cut_is_held_not_morphed(canvas: np.ndarray) -> None:
    a = moving(canvas, [0])[0]
    b = 255 - texture(SIZE, SIZE, seed=7, blur=6.0) // 3  # another shot, much brighter
    interpolator = FlowInterpolator()
    assert interpolator.is_cut(a, b)
    early, late = interpolator.between(a, b, [0.25, 0.75])
    assert np.array_equal(early, a)
    assert np.array_equal(late, b)


def test_motion_is_not_taken_for_a_cut(canvas: np.ndarray) -> None:
    a, b = moving(canvas, [0, 6])
    assert not FlowInterpolator().is_cut(a, b)


def test_large_frames_use_reduced_flow_resolution_and_keep_their_size() -> None:
    interpolator = FlowInterpolator(flow_side=320)
    assert interpolator.flow_shape(1080, 1920) == (180, 320)
    assert interpolator.flow_shape(48, 64) == (48, 64)
    big = cv2.resize(texture(300, 520, seed=3), (1920 + 40, 1080 + 40))
    a, middle, b = moving(big, [0, 10, 20], size=1080)
    a, middle, b = (f[:, :1080] for f in (a, middle, b))
    a, middle, b = (np.ascontiguousarray(cv2.resize(f, (1920, 1080))) for f in (a, middle, b))
    made = interpolator.between(a, b, [0.5])[0]
    assert made.shape == (1080, 1920, 3)
    assert psnr(made, middle) > psnr(blend(a, b, [0.5])[0], middle) + MARGIN_DB


def test_times_outside_the_pair_are_refused(canvas: np.ndarray) -> None:
    a, b = moving(canvas, [0, 6])
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        FlowInterpolator().between(a, b, [1.0])


@pytest.fixture(scope="module")
def demo_rife(tmp_path_factory: pytest.TempPathFactory) -> Path:
    (path,) = write_demo_interpolator(tmp_path_factory.mktemp("rife"))
    return path


def test_demo_interpolator_is_byte_identical_each_run(demo_rife: Path, tmp_path: Path) -> None:
    (again,) = write_demo_interpolator(tmp_path)
    assert again.name == DEMO_RIFE
    assert again.read_bytes() == demo_rife.read_bytes()


def test_demo_interpolator_loads_and_makes_frames_of_the_input_size(
    demo_rife: Path, canvas: np.ndarray
) -> None:
    from medialab_tui.engine.interpolation.learned import load_interpolator

    interpolator = load_interpolator(demo_rife, "cpu")
    # An odd size: the network pads to its multiple and crops back.
    a, b = (f[:37, :50] for f in moving(canvas, [0, 6]))
    made = interpolator.between(a, b, [1 / 3, 2 / 3])
    assert [f.shape for f in made] == [(37, 50, 3)] * 2
    assert all(f.dtype == np.uint8 for f in made)
    # The demo's flows are tiny and its mask near one half: close to a cross-fade.
    assert psnr(made[0], blend(a, b, [0.5])[0]) > 30


def test_pickle_interpolator_is_refused(tmp_path: Path) -> None:
    from medialab_tui.engine.interpolation.learned import load_interpolator

    pickle = tmp_path / "flownet.pkl"
    pickle.write_bytes(b"\x80\x04not opened")
    with pytest.raises(
        ValueError, match=r"flownet\.pkl is a pickle file .*convert it to \.safetensors"
    ):
        load_interpolator(pickle)


def test_safetensors_that_is_no_rife_is_refused(tmp_path: Path) -> None:
    from medialab_tui.engine.interpolation.learned import load_interpolator

    other = tmp_path / "other.safetensors"
    save_file({"conv_first.weight": np.zeros((4, 3, 3, 3), np.float32)}, other)
    with pytest.raises(ValueError, match="other.safetensors is not a RIFE interpolator"):
        load_interpolator(other)


def test_registry_lists_the_demo_interpolator_as_kind_interpolator(empty_home: Home) -> None:
    data = DataDir(empty_home.root).ensure()
    write_demo_interpolator(data.models)
    store = Store(data.db_path)
    registry.scan(store, data, load_config(data))
    (row,) = registry.list_models(store, kind="interpolator")
    assert (row.name, row.arch, row.format, row.safe) == ("demo-rife", "rife", "safetensors", True)


def test_frames_too_small_to_track_are_cross_faded() -> None:
    a, b = texture(8, 40, seed=1), texture(8, 40, seed=2)
    (made,) = FlowInterpolator().between(a, b, [0.5])
    assert np.array_equal(made, blend(a, b, [0.5])[0])
