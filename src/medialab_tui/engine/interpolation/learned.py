"""A learned frame interpolator: a RIFE-family IFNet, loaded from ``.safetensors``.

The network is the one of RIFE v4.x (Practical-RIFE's ``IFNet_HDv3``): a few
IFBlocks, coarse to fine (scales 8, 4, 2, 1 for four blocks), each estimating the
flow from time t to both frames and a blending mask from the two frames (warped
by the flow so far), the time and the previous mask; both frames are warped with
the final flow and mixed by the mask. Key names follow the ``flownet`` state
dict (``block0.conv0.0.0.weight``, ``block0.convblock.0.beta``,
``block0.lastconv.0.weight``…; a ``module.`` prefix from DDP training is
dropped), and the layout is read from the shapes, so the block widths and count
of a file decide the network:

- without ``encode.*`` keys: the v4.6 layout (7 inputs to the first block, 12 to
  the others; the mask accumulates over blocks);
- with ``encode.0`` / ``encode.1`` (a strided conv then a transposed conv, giving
  F feature channels per frame, warped along with the frames): the later v4.x
  layout (7 + 2F and 12 + 2F inputs; each block's mask replaces the last).

This is written from the published architecture; no real RIFE weights could be
tried here (nothing is downloaded), so loading converted v4.6 weights is the
intent but unverified, and the v4.7–v4.9 ``encode.cnn*`` head is not supported
(such a file is refused naming the keys). Pickle files (``flownet.pkl``) are
refused: convert them to ``.safetensors`` first.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from medialab_tui.engine.model_files import PICKLE_SUFFIXES, is_rife_state

ARCH = "rife"
_BLOCK_KEY = re.compile(r"^block(\d+)\.conv0\.0\.0\.weight$")
# Frames are padded to a multiple of this: the coarsest block sees 1/8 size,
# and its first convolutions halve it twice more.
_PAD = 64
_RESCONVS = 8


def _strip(key: str) -> str:
    return key.removeprefix("module.")


def _conv(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1), nn.LeakyReLU(0.2, True))


class ResConv(nn.Module):
    """A 3×3 conv with a learned per-channel scale on a residual path."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, 1, 1)
        self.beta = nn.Parameter(torch.ones((1, c, 1, 1)))
        self.relu = nn.LeakyReLU(0.2, True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.conv(x) * self.beta + x)


class IFBlock(nn.Module):
    """One scale: flow (4 channels, t→0 and t→1) and a mask logit, at 1/scale size."""

    def __init__(self, in_planes: int, c: int) -> None:
        super().__init__()
        self.conv0 = nn.Sequential(_conv(in_planes, c // 2, 2), _conv(c // 2, c, 2))
        self.convblock = nn.Sequential(*(ResConv(c) for _ in range(_RESCONVS)))
        self.lastconv = nn.Sequential(nn.ConvTranspose2d(c, 4 * 6, 4, 2, 1), nn.PixelShuffle(2))

    def forward(
        self, x: torch.Tensor, flow: torch.Tensor | None, scale: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.interpolate(x, scale_factor=1.0 / scale, mode="bilinear", align_corners=False)
        if flow is not None:
            small = F.interpolate(
                flow, scale_factor=1.0 / scale, mode="bilinear", align_corners=False
            )
            x = torch.cat((x, small / scale), 1)
        tmp = self.lastconv(self.convblock(self.conv0(x)))
        tmp = F.interpolate(tmp, scale_factor=scale, mode="bilinear", align_corners=False)
        return tmp[:, :4] * scale, tmp[:, 4:5]


@dataclass(frozen=True)
class Layout:
    """What a state dict's shapes say about the network."""

    widths: tuple[int, ...]
    in_planes: tuple[int, ...]
    features: int  # per-frame encoder channels, 0 without an encoder

    @classmethod
    def of(cls, state: dict[str, torch.Tensor]) -> Layout:
        if any(k.startswith("encode.cnn") for k in state):
            raise ValueError(
                "its encode.cnn* keys are those of RIFE v4.7–v4.9, which is not supported "
                "(v4.6 and the later encode.0/encode.1 layout are)"
            )
        blocks = sorted(int(m.group(1)) for k in state if (m := _BLOCK_KEY.match(k)))
        if not blocks or blocks != list(range(len(blocks))):
            raise ValueError("its blocks are not numbered block0…blockN")
        first = [state[f"block{i}.conv0.0.0.weight"].shape for i in blocks]
        features = int(state["encode.1.weight"].shape[1]) if "encode.1.weight" in state else 0
        return cls(
            widths=tuple(int(s[0]) * 2 for s in first),
            in_planes=tuple(int(s[1]) for s in first),
            features=features,
        )


class IFNet(nn.Module):
    """RIFE's intermediate-flow network (see the module docstring for the layouts)."""

    def __init__(self, layout: Layout) -> None:
        super().__init__()
        self.layout = layout
        f = layout.features
        expected = (7 + 2 * f, *(12 + 2 * f for _ in layout.widths[1:]))
        if layout.in_planes != expected:
            raise ValueError(
                f"block inputs {layout.in_planes} do not match a RIFE v4.x network ({expected})"
            )
        for i, (c_in, c) in enumerate(zip(layout.in_planes, layout.widths, strict=True)):
            self.add_module(f"block{i}", IFBlock(c_in, c))
        self.encode = (
            nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.ConvTranspose2d(16, f, 4, 2, 1))
            if f
            else None
        )
        count = len(layout.widths)
        self.scales = [float(2 ** (count - 1 - i)) for i in range(count)]

    def forward(self, img0: torch.Tensor, img1: torch.Tensor, t: float) -> torch.Tensor:
        """The frame at time ``t`` between ``img0`` and ``img1`` (N×3×H×W in [0, 1])."""
        time = torch.full_like(img0[:, :1], t)
        f0 = self.encode(img0) if self.encode is not None else None
        f1 = self.encode(img1) if self.encode is not None else None
        warped0, warped1 = img0, img1
        flow: torch.Tensor | None = None
        mask = torch.zeros_like(time)
        for i, scale in enumerate(self.scales):
            block: IFBlock = getattr(self, f"block{i}")
            if flow is None:
                parts = [img0, img1, *_pair(f0, f1), time]
                flow, mask = block(torch.cat(parts, 1), None, scale)
            else:
                parts = [warped0, warped1, *_warped_pair(f0, f1, flow), time, mask]
                delta, mask_delta = block(torch.cat(parts, 1), flow, scale)
                flow = flow + delta
                mask = mask + mask_delta if self.encode is None else mask_delta
            warped0 = warp(img0, flow[:, :2])
            warped1 = warp(img1, flow[:, 2:4])
        weight = torch.sigmoid(mask)
        return warped0 * weight + warped1 * (1 - weight)


def _pair(f0: torch.Tensor | None, f1: torch.Tensor | None) -> list[torch.Tensor]:
    return [] if f0 is None or f1 is None else [f0, f1]


def _warped_pair(
    f0: torch.Tensor | None, f1: torch.Tensor | None, flow: torch.Tensor
) -> list[torch.Tensor]:
    if f0 is None or f1 is None:
        return []
    return [warp(f0, flow[:, :2]), warp(f1, flow[:, 2:4])]


def warp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """``image`` sampled at each pixel plus ``flow`` (in pixels), edges repeated."""
    n, _, h, w = image.shape
    ys, xs = torch.meshgrid(
        torch.linspace(-1.0, 1.0, h, device=image.device, dtype=image.dtype),
        torch.linspace(-1.0, 1.0, w, device=image.device, dtype=image.dtype),
        indexing="ij",
    )
    base = torch.stack((xs, ys), dim=-1).expand(n, h, w, 2)
    norm = torch.tensor([(w - 1) / 2.0, (h - 1) / 2.0], device=image.device, dtype=image.dtype)
    grid = base + flow.permute(0, 2, 3, 1) / norm
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=True)


class LearnedInterpolator:
    """A loaded RIFE network with the interface of `flow.FlowInterpolator`."""

    def __init__(self, net: IFNet, device: torch.device, dtype: torch.dtype) -> None:
        self.net = net
        self.device = device
        self.dtype = dtype

    @torch.inference_mode()
    def between(self, a: np.ndarray, b: np.ndarray, times: Sequence[float]) -> list[np.ndarray]:
        """The frames at fractions ``times`` of the way from ``a`` to ``b`` (uint8 RGB)."""
        if a.shape != b.shape or a.ndim != 3 or a.shape[2] != 3:
            raise ValueError(
                f"frames must be two HxWx3 RGB arrays of one size, not {a.shape}, {b.shape}"
            )
        h, w = a.shape[:2]
        ph, pw = -h % _PAD, -w % _PAD
        img0, img1 = (self._tensor(x, ph, pw) for x in (a, b))
        out = []
        for t in times:
            if not 0.0 < t < 1.0:
                raise ValueError(f"interpolation times lie strictly between 0 and 1, not {t}")
            frame = self.net(img0, img1, float(t))[0, :, :h, :w]
            pixels = (frame.float().clamp(0, 1) * 255 + 0.5).to(torch.uint8)
            out.append(pixels.permute(1, 2, 0).cpu().numpy())
        return out

    def _tensor(self, frame: np.ndarray, ph: int, pw: int) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(frame)).to(self.device).permute(2, 0, 1)
        x = x[None].to(self.dtype) / 255.0
        return F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x


def load_interpolator(
    path: Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> LearnedInterpolator:
    """The RIFE interpolator in ``path`` (a ``.safetensors`` file) on ``device``.

    Raises ValueError with a sentence naming the file for a pickle, another
    format, or tensors that are not a RIFE IFNet of a supported layout.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        raise ValueError(
            f"{path.name} is a pickle file ({suffix}), which can run code when loaded; "
            "convert it to .safetensors"
        )
    if suffix != ".safetensors":
        raise ValueError(f"{path.name} is not a .safetensors file")
    from safetensors.torch import load_file

    state = {_strip(k): v for k, v in load_file(str(path)).items()}
    if not is_rife_state(list(state)):
        raise ValueError(f"{path.name} is not a RIFE interpolator (no IFNet block keys)")
    try:
        net = IFNet(Layout.of(state))
        net.load_state_dict(state, strict=True)
    except (RuntimeError, ValueError) as exc:
        raise ValueError(f"{path.name} is not a RIFE interpolator medialab loads: {exc}") from exc
    device = torch.device(device)
    net = net.to(device=device, dtype=dtype).eval()
    return LearnedInterpolator(net, device, dtype)
