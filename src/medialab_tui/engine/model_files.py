"""What kind of model a file or folder holds, read from its metadata alone.

Imported by the UI and the CLI, so it must stay cheap: standard library only,
no torch, and never a tensor read. Safetensors files are classified from the
names (and, where needed, shapes) in their JSON header; pickle checkpoints are
never opened, because unpickling can run arbitrary code.
"""

from __future__ import annotations

import bisect
import json
import os
import re
import stat
import struct
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

from medialab_tui.engine.families import ARCHS, FAMILIES, family_of

# A real header is a few MB at most (tens of thousands of tensor entries); a
# larger length prefix means the file is not safetensors or is corrupt.
MAX_HEADER_BYTES = 100 * 1024 * 1024

# Formats torch (or Python) unpickles, which can run code when loaded.
PICKLE_SUFFIXES = frozenset({".ckpt", ".pt", ".pth", ".bin", ".pkl", ".pickle"})

_UNKNOWN_SAFETENSORS = ("unknown", "unknown", "safetensors")

# Width of the text embedding a UNet cross-attends to, which tells the SD families
# apart in checkpoints, LoRAs and ControlNets (SDXL's refiner: 1280).
_CONTEXT_WIDTH_ARCH = {w: a for f in FAMILIES.values() for w, a in f.unet_widths.items()}
_ADM_WIDTH_ARCH = {w: a for f in FAMILIES.values() for w, a in f.adm_widths.items()}
_INPAINT_ARCH = {a: i for f in FAMILIES.values() for a, i in f.inpaint_archs.items()}
# A transformer's hidden width → arch, for LoRAs that name no family-only block.
_HIDDEN_WIDTH_ARCH = {w: a for f in FAMILIES.values() for w, a in f.hidden_widths.items()}

# Where a full checkpoint keeps its denoiser (UNet or transformer), and where its text
# encoders: SD/SDXL's LDM layout, SD3 and Flux as ComfyUI saves them. A file with
# the denoiser and no text encoder is a `diffusion_model` (ComfyUI's `diffusion_models/`).
_DENOISER_PREFIX = "model.diffusion_model."
_TEXT_ENCODER_PREFIXES = ("cond_stage_model.", "conditioner.", "text_encoders.")

# Text encoders saved on their own (ComfyUI's `text_encoders/`, `clip/`): CLIP by the
# width of its last layer norm, T5 by its vocabulary (UMT5's is 256k tokens, T5's 32k).
_CLIP_WIDTH_ARCH = {768: "clip-l", 1024: "clip-h", 1280: "clip-g"}
_UMT5_VOCAB = 250_000
# VAEs by the latent channels their decoder takes: SD1.5/SD2/SDXL 4, SD3/Flux 16.
_VAE_CHANNEL_ARCH = {4: "vae-4ch", 16: "vae-16ch"}
# Archs of files that belong to no family, which demo files may name in their metadata.
PART_ARCHS = frozenset(
    {*_CLIP_WIDTH_ARCH.values(), "clip", "t5", "umt5", *_VAE_CHANNEL_ARCH.values()}
)

# Tensor-name endings of LoRA-style adapters: kohya and PEFT LoRA, LyCORIS LoHa/LoKr.
_LORA_SUFFIXES = (
    ".lora_down.weight",
    ".lora_up.weight",
    ".lora_A.weight",
    ".lora_B.weight",
    ".lora.down.weight",
    ".lora.up.weight",
    ".hada_w1_a",
    ".hada_w1_b",
    ".hada_w2_a",
    ".hada_w2_b",
    ".lokr_w1",
    ".lokr_w2",
    ".lokr_w1_a",
    ".lokr_w2_a",
)
# The down (input-side) factor of each adapter flavour, whose columns are the width of
# the layer it patches.
_LORA_DOWN = (".lora_down.weight", ".lora_A.weight", ".lora.down.weight", ".hada_w1_b")
_ATTENTION_INPUTS = (
    "attn.to_q",
    "attn_to_q",
    "attn.qkv",
    "attn_qkv",
    "img_attn.qkv",
    "img_attn_qkv",
    "x_block.attn.qkv",
    "x_block_attn_qkv",
)

# Kinds whose arch a file's metadata may give when its shapes do not tell.
_METADATA_KINDS = ("lora", "controlnet", "text_encoder", "vae")

_VAE_PREFIXES = ("encoder.", "decoder.", "quant_conv.", "post_quant_conv.")

# Words in a file name that hint at its kind, for files that are never opened.
_NAME_HINTS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("lora", "locon", "lycoris"), "lora"),
    (("controlnet", "control_"), "controlnet"),
    (("esrgan", "upscal", "4x", "2x"), "upscaler"),
    (("rife", "flownet"), "interpolator"),
    (("vae",), "vae"),
    (("embedding", "textual_inversion"), "embedding"),
)


def detect_arch(path: Path) -> tuple[str, str, str]:
    """Return ``(kind, arch, format)`` for a model folder or file.

    kind is one of checkpoint, diffusion_model (a UNet or transformer saved without
    its text encoders, as in ComfyUI's `diffusion_models/`), video, lora,
    text_encoder, vae, controlnet, upscaler, interpolator, embedding, detector,
    unknown. arch is a family's (sd15, sd15-inpaint, sd2, sdxl, sdxl-refiner,
    sdxl-inpaint, sd3, sd3-large, flux, flux-schnell, svd, wan, ltx), a part's
    (clip-l, clip-g, clip-h, clip, t5, umt5; vae-4ch, vae-16ch by latent channels),
    esrgan, rife, opencv-cascade or unknown (or a lowercased pipeline class for other
    diffusers folders); format is diffusers, safetensors, pickle or xml (an OpenCV
    cascade, which holds no code). The keys decide, never the file's name.

    Raises ValueError when a diffusers folder or safetensors file is corrupt.
    """
    path = Path(path)
    if path.is_dir():
        return _detect_diffusers_folder(path)
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        header = check_safetensors(path)
        metadata = header.pop("__metadata__", None)
        kind, arch, fmt = _detect_from_tensors(header)
        # Tiny demo files have no telling shapes; they name their arch in the metadata.
        if kind in _METADATA_KINDS and arch in ("unknown", "clip"):
            named = arch_from_metadata(metadata)
            arch = arch if named == "unknown" else named
        return (kind, arch, fmt)
    if suffix in PICKLE_SUFFIXES:
        return (_guess_kind_from_name(path), "unknown", "pickle")
    if suffix == ".xml":
        if is_opencv_cascade(path):
            return ("detector", "opencv-cascade", "xml")
        return ("unknown", "unknown", "xml")
    return ("unknown", "unknown", suffix.lstrip(".") or "unknown")


def open_regular(path: Path) -> BinaryIO:
    """Open ``path`` for reading only if it is a regular file.

    Opening never blocks (a FIFO or a device named like a model file is refused,
    not read), and the check is made on the opened file, so a file swapped for
    something else between a scan's `stat` and its read is still caught.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{path} is not a regular file")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_safetensors_header(path: Path, name: str | None = None) -> dict:
    """The JSON header of a safetensors file: tensor name -> dtype, shape, offsets.

    Reads only the header (an 8-byte little-endian length, then that much JSON).
    Raises ValueError naming the file (``name``, else its file name) when the
    header is damaged.
    """
    return _read_header(Path(path), name or Path(path).name)[0]


def check_safetensors(path: Path, name: str | None = None) -> dict:
    """The header of a safetensors file whose every tensor lies inside the file.

    Still reads only the header: the data offsets are checked against the file
    size, which catches a file cut short by a failed download or copy.
    """
    name = name or Path(path).name
    header, data_bytes = _read_header(Path(path), name)
    for tensor, info in header.items():
        if tensor == "__metadata__":
            continue
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        if not (
            isinstance(offsets, list)
            and len(offsets) == 2
            and all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
            and 0 <= offsets[0] <= offsets[1]
        ):
            raise ValueError(
                f"{name} is not a valid safetensors file (tensor {tensor!r} has no data offsets)"
            )
        if offsets[1] > data_bytes:
            raise ValueError(
                f"{name} is not a valid safetensors file (it is cut short: tensor {tensor!r} "
                f"ends at byte {offsets[1]} of {data_bytes})"
            )
    return header


def _read_header(path: Path, name: str) -> tuple[dict, int]:
    """The header and the size of the data that follows it."""
    with open_regular(path) as f:
        size = os.fstat(f.fileno()).st_size
        prefix = f.read(8)
        if len(prefix) < 8:
            raise ValueError(f"{name} is too short to be a safetensors file ({size} bytes)")
        (length,) = struct.unpack("<Q", prefix)
        if length > MAX_HEADER_BYTES or length > size - 8:
            raise ValueError(
                f"{name} is not a valid safetensors file (its header claims {length} bytes; "
                f"the file has {size})"
            )
        raw = f.read(length)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(
            f"{name} is not a valid safetensors file (its header is not JSON)"
        ) from exc
    if not isinstance(header, dict):
        raise ValueError(f"{name} is not a valid safetensors file (its header is not an object)")
    return header, size - 8 - length


def pickle_files(files: Iterable[Path]) -> list[Path]:
    """The files among ``files`` whose format is a pickle (by suffix, as loaders choose)."""
    return [f for f in files if f.suffix.lower() in PICKLE_SUFFIXES]


# OpenCV writes cascades as <opencv_storage><cascade ...> (or, in the old Haar
# format, <name type_id="opencv-haar-classifier">), after a licence comment that
# can run to a few KB.
_CASCADE_HEAD_BYTES = 64 * 1024
_XML_COMMENT = re.compile(r"<!--.*?-->", re.S)
_STORAGE_CHILD = re.compile(r"<opencv_storage>\s*<([\w.-]+)([^>]*)>")


def is_opencv_cascade(path: Path) -> bool:
    """True when ``path`` is an OpenCV cascade classifier (Haar or LBP) .xml file."""
    try:
        with open_regular(Path(path)) as f:
            head = f.read(_CASCADE_HEAD_BYTES).decode("utf-8", "replace")
    except OSError:
        return False
    match = _STORAGE_CHILD.search(_XML_COMMENT.sub("", head))
    if match is None:
        return False
    return match.group(1) == "cascade" or "opencv-haar-classifier" in match.group(2)


def _detect_diffusers_folder(path: Path) -> tuple[str, str, str]:
    index_file = path / "model_index.json"
    if not index_file.is_file():
        controlnet = controlnet_folder_config(path)
        if controlnet is not None:
            return ("controlnet", _controlnet_folder_arch(path, controlnet), "diffusers")
        return ("unknown", "unknown", "diffusers")
    try:
        index = json.loads(index_file.read_text(encoding="utf-8"))
        class_name = str(index["_class_name"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{index_file} is not a valid diffusers model index") from exc
    for family in FAMILIES.values():
        arch = family.index_classes.get(class_name)
        if arch is not None:
            if family.index_variant is not None:
                arch = family.index_variant(index, arch)
            if family.folder_variant is not None:
                arch = family.folder_variant(path, arch)
            return (family.kind, arch, "diffusers")
    return ("checkpoint", class_name.lower(), "diffusers")


class _Keys:
    """The tensor names of a header, looked at below one prefix (the denoiser's)."""

    def __init__(self, tensors: dict[str, dict], prefix: str = "") -> None:
        self.tensors = tensors
        self.prefix = prefix
        self.names = [k for k in tensors if k.startswith(prefix)] if prefix else list(tensors)
        # Sorted, a prefix is looked up by bisection: thousands of names, dozens of lookups.
        self._sorted = sorted(self.names)

    def has(self, *prefixes: str) -> bool:
        """Some name starts with one of `prefixes`."""
        for p in prefixes:
            full = self.prefix + p
            i = bisect.bisect_left(self._sorted, full)
            if i < len(self._sorted) and self._sorted[i].startswith(full):
                return True
        return False

    def has_all(self, prefixes: Iterable[str]) -> bool:
        return all(self.has(p) for p in prefixes)

    def shape(self, name: str) -> list[int] | None:
        info = self.tensors.get(self.prefix + name)
        shape = info.get("shape") if isinstance(info, dict) else None
        if isinstance(shape, list) and all(isinstance(d, int) for d in shape):
            return shape
        return None

    def dim(self, name: str, axis: int) -> int | None:
        shape = self.shape(name)
        return shape[axis] if shape is not None and len(shape) > abs(axis) else None


def _detect_from_tensors(tensors: dict[str, dict]) -> tuple[str, str, str]:
    if not tensors:
        return _UNKNOWN_SAFETENSORS
    keys = _Keys(tensors)
    # LoRA first: its key names embed the names of the layers it patches.
    if keys.has("lora_unet_", "lora_te") or any(k.endswith(_LORA_SUFFIXES) for k in keys.names):
        return ("lora", _lora_arch(keys), "safetensors")
    if is_rife_state(keys.names):
        return ("interpolator", "rife", "safetensors")
    if keys.has("control_model.", "controlnet_cond_embedding."):
        return ("controlnet", _arch_from_context_width(tensors), "safetensors")
    denoiser = _denoiser(keys)
    if denoiser is not None:
        return denoiser
    for kind, arch in (_text_encoder(keys), _vae(keys)):
        if kind:
            return (kind, arch, "safetensors")
    if "model.0.weight" in tensors or "conv_first.weight" in tensors or keys.has("body."):
        return ("upscaler", "esrgan", "safetensors")
    for family in FAMILIES.values():
        if family.embedding_keys and all(k in tensors for k in family.embedding_keys):
            return ("embedding", family.default_arch, "safetensors")
    return _UNKNOWN_SAFETENSORS


def _denoiser(keys: _Keys) -> tuple[str, str, str] | None:
    """A file holding a UNet or a transformer: a full checkpoint when its text encoders
    are in it too (a video model for video families), else a `diffusion_model`."""
    model = _Keys(keys.tensors, _DENOISER_PREFIX) if keys.has(_DENOISER_PREFIX) else keys
    found = _transformer_arch(model) or _unet_arch(model, keys)
    if found is None:
        return None
    family = family_of(found)
    if keys.has(*_TEXT_ENCODER_PREFIXES):
        kind = family.kind if family is not None else "checkpoint"
    else:
        kind = "diffusion_model"
    return (kind, found, "safetensors")


def _transformer_arch(model: _Keys) -> str | None:
    """The arch of a denoiser one family's `model_keys` name (Flux, SD3, the video
    families), a variant told by its hidden width; None for SD-style UNets."""
    for family in FAMILIES.values():
        for prefixes, arch in family.model_keys:
            if model.has_all(prefixes):
                for name in family.hidden_keys:
                    width = model.dim(name, 0)
                    if width is not None:
                        return family.hidden_widths.get(width, arch)
                return arch
    return None


def _unet_arch(model: _Keys, keys: _Keys) -> str | None:
    """SD1.5 / SD2 / SDXL (base, refiner) and their inpainting UNets, as ComfyUI tells
    them: cross-attention width, else the label embedding's, else the text encoders'
    prefixes; None when the file holds no SD-style UNet."""
    if model.has("input_blocks.0.0.weight"):
        conv_in, adm = "input_blocks.0.0.weight", "label_emb.0.0.weight"
    elif model.has("conv_in.weight") and model.has("down_blocks."):
        conv_in, adm = "conv_in.weight", "add_embedding.linear_1.weight"
    else:
        if not keys.has(_DENOISER_PREFIX):
            return None
        conv_in = adm = ""
    arch = _CONTEXT_WIDTH_ARCH.get(_cross_attention_width(model) or 0)
    if arch is None and adm:
        arch = _ADM_WIDTH_ARCH.get(model.dim(adm, 1) or 0)
    if arch is None:
        arch = next(
            (
                a
                for f in FAMILIES.values()
                for prefixes, a in f.checkpoint_keys
                if keys.has_all(prefixes)
            ),
            None,
        )
    if arch is None:
        return "unknown" if conv_in else None
    if conv_in and model.dim(conv_in, 1) == 9:
        arch = _INPAINT_ARCH.get(arch, arch)
    return arch


def _cross_attention_width(model: _Keys) -> int | None:
    for name in model.names:
        if name.endswith("attn2.to_k.weight"):
            width = model.dim(name[len(model.prefix) :], 1)
            if width is not None:
                return width
    return None


def _text_encoder(keys: _Keys) -> tuple[str, str]:
    """("text_encoder", arch) for a CLIP or T5 text encoder saved alone, else ("", "")."""
    if keys.has("encoder.block.0.layer.0.SelfAttention."):
        vocab = keys.dim("shared.weight", 0) or keys.dim("encoder.embed_tokens.weight", 0) or 0
        return ("text_encoder", "umt5" if vocab >= _UMT5_VOCAB else "t5")
    for layers, norm in (
        # Hugging Face's layout, with its `text_model.` prefix (as ComfyUI keeps them)
        # or without (as transformers 5 saves them), then open_clip's.
        ("text_model.encoder.layers.", "text_model.final_layer_norm.weight"),
        ("encoder.layers.0.self_attn.", "final_layer_norm.weight"),
        ("transformer.resblocks.", "ln_final.weight"),
    ):
        if keys.has(layers):
            width = keys.dim(norm, 0) or 0
            return ("text_encoder", _CLIP_WIDTH_ARCH.get(width, "clip"))
    return ("", "")


def _vae(keys: _Keys) -> tuple[str, str]:
    """("vae", arch) for a VAE saved alone (original or diffusers layout), else ("", "")."""
    if not (
        all(k.startswith(_VAE_PREFIXES) for k in keys.names)
        and keys.has("encoder.down", "decoder.up")
    ):
        return ("", "")
    channels = keys.dim("decoder.conv_in.weight", 1) or 0
    return ("vae", _VAE_CHANNEL_ARCH.get(channels, "unknown"))


def is_rife_state(keys: list[str]) -> bool:
    """A RIFE IFNet `flownet` state dict (a DDP `module.` prefix allowed)."""
    names = {k.removeprefix("module.") for k in keys}
    return "block0.conv0.0.0.weight" in names and "block0.lastconv.0.weight" in names


def _lora_arch(keys: _Keys) -> str:
    """The family a LoRA (kohya, PEFT, LyCORIS) is for: a block only one family has
    (Flux's double/single blocks, SD3's joint blocks, SDXL's second text encoder),
    then the width of what it patches; unknown when neither tells."""
    hidden = _HIDDEN_WIDTH_ARCH.get(_lora_width(keys, _ATTENTION_INPUTS) or 0)
    for family in FAMILIES.values():
        if family.lora_prefixes and keys.has(*family.lora_prefixes):
            if hidden in family.archs:
                return hidden
            return family.default_arch
    context = _CONTEXT_WIDTH_ARCH.get(_lora_width(keys, ("attn2_to_k", "attn2.to_k")) or 0)
    return context or hidden or "unknown"


def _lora_width(keys: _Keys, layers: tuple[str, ...]) -> int | None:
    """The input width of the first patched layer named like one of `layers`."""
    for name in keys.names:
        if not any(layer in name for layer in layers):
            continue
        if name.endswith(_LORA_DOWN):
            width = keys.dim(name, 1)
        elif name.endswith((".lokr_w1", ".lokr_w2")):
            # A Kronecker product: the layer's width is the product of the factors'.
            base = name.rsplit(".", 1)[0]
            w1, w2 = keys.dim(base + ".lokr_w1", 1), keys.dim(base + ".lokr_w2", 1)
            if w2 is None:
                w2 = keys.dim(base + ".lokr_w2_b", 1)
            width = w1 * w2 if w1 and w2 else None
        else:
            continue
        if width is not None:
            return width
    return None


def _arch_from_context_width(tensors: dict[str, dict]) -> str:
    """sd15/sd2/sdxl from the input width of a ControlNet's cross-attention key projection."""
    return _CONTEXT_WIDTH_ARCH.get(_cross_attention_width(_Keys(tensors)) or 0, "unknown")


# Keys other tools write into a safetensors file's metadata that name the family
# (kohya's sd-scripts, the Stability model spec) come from each family's
# `metadata_prefixes`; medialab's demo adapters write `medialab.arch`.


def arch_from_metadata(metadata: object) -> str:
    """The family a LoRA or ControlNet file names in its ``__metadata__``, else unknown.

    A fallback for files whose shapes do not tell (tiny demo adapters, LoRAs
    that patch no cross-attention key projection).
    """
    if not isinstance(metadata, dict):
        return "unknown"
    own = metadata.get("medialab.arch")
    if own in ARCHS or own in PART_ARCHS:
        return str(own)
    for family in FAMILIES.values():
        for key, prefix in family.metadata_prefixes:
            if str(metadata.get(key, "")).lower().startswith(prefix):
                return family.default_arch
    return "unknown"


def controlnet_folder_config(path: Path) -> dict | None:
    """The ``config.json`` of a ControlNet saved as a diffusers folder, else None."""
    config_file = Path(path) / "config.json"
    if not config_file.is_file():
        return None
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    controlnet_classes = {f.controlnet_class for f in FAMILIES.values()}
    if isinstance(config, dict) and config.get("_class_name") in controlnet_classes:
        return config
    return None


def _controlnet_folder_arch(path: Path, config: dict) -> str:
    # Flux's and SD3's ControlNets are classes of their own.
    for family in FAMILIES.values():
        if family.controlnet_class == config.get("_class_name") != "ControlNetModel":
            return family.default_arch
    # SDXL ControlNets take the size/crop micro-conditioning; the others differ
    # in the width of the text embedding they attend to.
    if config.get("addition_embed_type") == "text_time":
        return next(f.default_arch for f in FAMILIES.values() if f.text_time)
    width = config.get("cross_attention_dim")
    if isinstance(width, int) and width in _CONTEXT_WIDTH_ARCH:
        return _CONTEXT_WIDTH_ARCH[width]
    weights = path / "diffusion_pytorch_model.safetensors"
    if weights.is_file():
        return arch_from_metadata(read_safetensors_header(weights).get("__metadata__"))
    return "unknown"


def _guess_kind_from_name(path: Path) -> str:
    """A listing hint for files that are never opened: words in the name, then the suffix."""
    name = path.name.lower()
    for words, kind in _NAME_HINTS:
        if any(word in name for word in words):
            return kind
    # Conventions: .ckpt files are full checkpoints, .pth files ESRGAN-style upscalers.
    return {".ckpt": "checkpoint", ".pth": "upscaler"}.get(path.suffix.lower(), "unknown")
