"""What a model family knows, as data: how to tell it from a file, what it runs, how fast.

A family is one package, `families/<name>/`: `__init__.py` holds its `FAMILY`
(detection signatures, the stages each of its architectures runs, speed guesses,
latent preview colours; no torch) and, for families medialab can run, `load.py`
the worker side (the diffusers pipeline classes it loads with).
"""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

# One matrix row per latent channel (to RGB in [-1, 1]) and a bias: the widely used
# approximations (ComfyUI's latent formats) that make step previews possible
# without running the VAE.
LatentRGB = tuple[tuple[tuple[float, float, float], ...], tuple[float, float, float]]

# The diffusion stages a text-to-image family runs.
IMAGE_STAGES = ("txt2img", "img2img", "refine", "detail", "blend")
# The stages an image-to-video family runs.
VIDEO_STAGES = ("i2v",)

# Samplers (the `sampler` key) of the UNet families: noise-prediction schedulers.
UNET_SAMPLERS = (
    "default",
    "euler",
    "euler_a",
    "heun",
    "ddim",
    "dpmpp_2m",
    "dpmpp_2m_karras",
    "dpmpp_2m_sde_karras",
    "unipc",
    "pndm",
)
# Samplers of the rectified-flow families (Flux, SD3): flow-matching Euler, plain,
# with Karras-spaced sigmas, or stochastic (fresh noise each step, as ancestral ones).
FLOW_SAMPLERS = ("default", "flow_euler", "flow_euler_karras", "flow_euler_stochastic")


# CLIP's tokenizer splits words, digits and punctuation apart; most common words are
# one token, rarer ones several. A count of those pieces is a fair lower bound.
_TOKEN_PIECES = re.compile(r"[^\W\d_]+|\d|[^\w\s]")


def estimate_tokens(text: str) -> int:
    """About how many CLIP tokens `text` is (without the start and end tokens)."""
    return len(_TOKEN_PIECES.findall(text))


@dataclass(frozen=True)
class VideoLimits:
    """What a video family accepts, as numbers: checked at submit, named in the sentence.

    Frame counts are `frame_step`·k + 1 (Wan 4k+1, LTX 8k+1; a step of 1 takes any
    count) between `min_frames` and `max_frames`; sizes are multiples of
    `size_multiple`; the output plays at `fps_min`…`fps_max`.
    """

    size_multiple: int
    frame_step: int
    min_frames: int
    max_frames: int
    fps_min: int
    fps_max: int
    default_fps: int
    default_cfg: float
    # The family reads a motion prompt (Wan, LTX) / a motion bucket (SVD).
    prompt: bool = False
    motion: bool = False

    def frame_rule(self) -> str:
        """`4k+1` (or `any count`), as the sentences say it."""
        return f"{self.frame_step}k+1" if self.frame_step > 1 else "any count"

    def valid_frames(self, frames: int) -> bool:
        return self.min_frames <= frames <= self.max_frames and (frames - 1) % self.frame_step == 0

    def nearest_frames(self, frames: int) -> tuple[int, ...]:
        """The valid counts next to `frames`: the nearest below and above, where there are."""
        valid = [n for n in range(self.min_frames, self.max_frames + 1) if self.valid_frames(n)]
        below = [n for n in valid if n < frames][-1:]
        above = [n for n in valid if n > frames][:1]
        return (*below, *above)

    def fit_size(self, size: int) -> int:
        """`size` rounded down to the family's multiple (at least one multiple)."""
        return max(self.size_multiple, size // self.size_multiple * self.size_multiple)


@dataclass(frozen=True)
class ImageRules:
    """What an image arch takes, as data: held against a stage's keys at submit (the
    sentence names these numbers) and filling the keys a stage leaves unset."""

    # Widths and heights are multiples of this (the VAE's factor × the patch size).
    size_multiple: int = 8
    samplers: tuple[str, ...] = UNET_SAMPLERS
    steps: int = 20
    # Classifier-free guidance scale; None: the model takes none (`cfg` is refused).
    cfg: float | None = 7.0
    # Distilled guidance the model embeds (Flux dev's `guidance`); None: takes none.
    guidance: float | None = None
    # False: the model reads no negative prompt (it is ignored, and the dry run says so).
    negative: bool = True
    # Tokens its longest text encoder reads, where that is not the family's.
    text_tokens: int | None = None
    # How sentences name the arch, where the family's title is not enough.
    label: str | None = None


@dataclass(frozen=True)
class VideoRequest:
    """One video to make, every value resolved (the stage's keys, else the family's
    defaults): what a video family's `load.generate` and `load.decode_calls` read."""

    image: Any  # a PIL image of `width`×`height`
    prompt: str
    negative: str
    width: int
    height: int
    frames: int
    fps: int
    steps: int
    cfg: float
    # SVD's own conditioning; the other families ignore them.
    motion: int
    noise_aug: float
    decode_chunk_size: int


@dataclass(frozen=True)
class SplitPart:
    """A part a split checkpoint needs registered beside its transformer file, the way
    ComfyUI users keep them (`text_encoders/`, `vae/`): the pipeline component it
    becomes, the registry kind and arch of a file that can be it, and how a sentence
    names it."""

    component: str
    kind: str
    arch: str
    title: str


def component_config(folder: Path, component: str) -> dict:
    """The `config.json` of one component of a diffusers folder ({} when unreadable)."""
    try:
        config = json.loads((Path(folder) / component / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return config if isinstance(config, dict) else {}


@dataclass(frozen=True)
class Family:
    """One model family (SD1.5, SDXL, …) and every architecture (`arch`) it owns."""

    name: str
    title: str
    # Registry `arch` → the stage types that can run a model of it.
    archs: dict[str, tuple[str, ...]]
    # The registry `kind` of its models (`checkpoint`; `video` for video families).
    kind: str = "checkpoint"
    # model_index.json `_class_name` → arch, for diffusers folders; `index_variant`
    # may then tell variants apart from the whole index: (index, arch) → arch.
    index_classes: dict[str, str] = field(default_factory=dict)
    index_variant: Callable[[dict, str], str] | None = None
    # ... and `folder_variant` from the folder's component configs: (folder, arch) → arch.
    folder_variant: Callable[[Path, str], str] | None = None
    # Single-file checkpoints: (key prefixes that must all be present, arch), first match;
    # for UNet files the text encoders' prefixes, read when the UNet's shapes do not tell.
    checkpoint_keys: tuple[tuple[tuple[str, ...], str], ...] = ()
    # The denoiser's own keys (a transformer, or a UNet unlike SD's), as a file holding
    # only it names them (ComfyUI's `diffusion_models/`); a full checkpoint has them
    # under `model.diffusion_model.`. (key prefixes that must all be present, arch),
    # first match, so a variant's extra key comes before the plain arch.
    model_keys: tuple[tuple[tuple[str, ...], str], ...] = ()
    # A transformer's hidden width → arch (SD3.5 Large is wider than Medium), read from
    # the first of `hidden_keys` present (its rows), or from a LoRA's down projection.
    hidden_keys: tuple[str, ...] = ()
    hidden_widths: dict[int, str] = field(default_factory=dict)
    # SD-style UNets: cross-attention width (an `attn2.to_k` input) → arch, and the width
    # of the class-label embedding (`label_emb`, SDXL's size/crop conditioning) → arch.
    unet_widths: dict[int, str] = field(default_factory=dict)
    adm_widths: dict[int, str] = field(default_factory=dict)
    # arch → the arch of its inpainting UNet (9 input channels: latents, mask, masked image).
    inpaint_archs: dict[str, str] = field(default_factory=dict)
    # Key prefixes that only this family's LoRAs have (e.g. SDXL's two text encoders).
    lora_prefixes: tuple[str, ...] = ()
    # What a split transformer file of this family needs registered beside it.
    split_parts: tuple[SplitPart, ...] = ()
    # arch → component → config keys: how a split transformer of `arch` loads with the
    # config folder of another arch of the family (Flux schnell with a dev folder).
    split_overrides: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    # The tensor names of a textual-inversion embedding of this family.
    embedding_keys: tuple[str, ...] = ()
    # Width of the text embedding the UNet cross-attends to (LoRAs, ControlNets).
    context_width: int | None = None
    # SDXL-style size/crop micro-conditioning (`addition_embed_type = "text_time"`).
    text_time: bool = False
    # (safetensors metadata key, value prefix) other tools write for this family.
    metadata_prefixes: tuple[tuple[str, str], ...] = ()
    # The archs a `refine` stage with `method = "refiner"` can run (a second pass at
    # the same size by a model trained for it).
    refiners: tuple[str, ...] = ()
    # Tokens the family's text encoder reads (CLIP: 77, start and end included);
    # the rest of a longer prompt is dropped. None: no such limit.
    text_tokens: int | None = None
    # Seconds per denoising step at 512×512 when nothing was measured, by device kind.
    step_seconds: dict[str, float] = field(default_factory=dict)
    latent_rgb: LatentRGB | None = None
    # Frame counts, sizes and frame rates of a video family; None for image families.
    # Archs of this family whose LoRAs and ControlNets also fit another of its archs
    # (the same layout of weights): model arch → the adapter archs it takes too.
    adapter_archs: dict[str, tuple[str, ...]] = field(default_factory=dict)
    video: VideoLimits | None = None
    # What its image archs take (sizes, samplers, guidance, defaults), and the archs
    # that differ from it (Flux schnell from dev).
    image: ImageRules = ImageRules()
    arch_image: dict[str, ImageRules] = field(default_factory=dict)
    # Its ControlNets: the diffusers class they are saved as (config.json
    # `_class_name`), the stages that take one, and the call key of the control image
    # in text-to-image (Flux's and SD3's pipelines take `control_image`, as img2img does).
    controlnet_class: str = "ControlNetModel"
    control_stages: tuple[str, ...] = ("txt2img", "img2img", "refine")
    control_key: str = "image"

    @property
    def default_arch(self) -> str:
        """The arch a file of this family gets when nothing tells its variants apart."""
        return next(iter(self.archs))

    def takes_adapter(self, arch: str, adapter_arch: str) -> bool:
        """True when a LoRA or ControlNet made for `adapter_arch` fits a model of `arch`:
        the same arch, or one whose weights have the same layout (Flux dev and schnell)."""
        return adapter_arch == arch or adapter_arch in self.adapter_archs.get(arch, ())

    def runs(self, arch: str, stage: str) -> bool:
        """True when a model of `arch` can run stage `stage`."""
        return stage in self.archs.get(arch, ())

    def image_rules(self, arch: str) -> ImageRules:
        """What a model of `arch` takes in an image stage."""
        return self.arch_image.get(arch, self.image)

    def label(self, arch: str) -> str:
        """The arch as sentences name it ("SDXL", "Flux schnell")."""
        return self.image_rules(arch).label or self.title

    def loader(self) -> ModuleType:
        """The worker side of the family (`families/<name>/load.py`); imports torch."""
        return importlib.import_module(f"{__package__}.{self.name}.load")
