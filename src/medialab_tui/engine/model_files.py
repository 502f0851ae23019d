"""What kind of model a file or folder holds, read from its metadata alone.

Imported by the UI and the CLI, so it must stay cheap: standard library only,
no torch, and never a tensor read. Safetensors files are classified from the
names (and, where needed, shapes) in their JSON header; pickle checkpoints are
never opened, because unpickling can run arbitrary code.
"""

from __future__ import annotations

import json
import os
import re
import stat
import struct
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

from medialab_tui.engine.families import ARCHS, FAMILIES

# A real header is a few MB at most (tens of thousands of tensor entries); a
# larger length prefix means the file is not safetensors or is corrupt.
MAX_HEADER_BYTES = 100 * 1024 * 1024

# Formats torch (or Python) unpickles, which can run code when loaded.
PICKLE_SUFFIXES = frozenset({".ckpt", ".pt", ".pth", ".bin", ".pkl", ".pickle"})

_UNKNOWN_SAFETENSORS = ("unknown", "unknown", "safetensors")

# Width of the text embedding the UNet cross-attends to, which tells the
# families apart in LoRA and ControlNet files.
_CONTEXT_WIDTH_ARCH = {
    f.context_width: f.default_arch for f in FAMILIES.values() if f.context_width is not None
}

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

    kind is one of checkpoint, video, lora, vae, controlnet, upscaler,
    embedding, detector, unknown; arch is sd15, sdxl, sdxl-refiner, sd2, svd,
    wan, ltx, esrgan, opencv-cascade or unknown (or a lowercased pipeline class for other
    diffusers folders); format is diffusers, safetensors, pickle or xml (an
    OpenCV cascade, which holds no code).

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
        if kind in ("lora", "controlnet") and arch == "unknown":
            arch = arch_from_metadata(metadata)
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
            return (family.kind, arch, "diffusers")
    return ("checkpoint", class_name.lower(), "diffusers")


def _detect_from_tensors(tensors: dict[str, dict]) -> tuple[str, str, str]:
    keys = list(tensors)
    if not keys:
        return _UNKNOWN_SAFETENSORS

    def any_starts(*prefixes: str) -> bool:
        return any(k.startswith(prefixes) for k in keys)

    # LoRA first: its key names embed the names of the layers it patches.
    if any_starts("lora_unet_", "lora_te") or any(_is_lora_key(k) for k in keys):
        for family in FAMILIES.values():
            if family.lora_prefixes and any_starts(*family.lora_prefixes):
                return ("lora", family.default_arch, "safetensors")
        return ("lora", _arch_from_context_width(tensors, lora=True), "safetensors")
    if is_rife_state(keys):
        return ("interpolator", "rife", "safetensors")
    if any_starts("control_model.", "controlnet_cond_embedding."):
        return ("controlnet", _arch_from_context_width(tensors), "safetensors")
    for family in FAMILIES.values():
        for prefixes, arch in family.checkpoint_keys:
            if all(any_starts(prefix) for prefix in prefixes):
                return ("checkpoint", arch, "safetensors")
    if all(k.startswith(_VAE_PREFIXES) for k in keys) and any_starts("encoder.down", "decoder.up"):
        return ("vae", "unknown", "safetensors")
    if "model.0.weight" in tensors or "conv_first.weight" in tensors or any_starts("body."):
        return ("upscaler", "esrgan", "safetensors")
    for family in FAMILIES.values():
        if family.embedding_keys and set(family.embedding_keys) <= set(keys):
            return ("embedding", family.default_arch, "safetensors")
    return _UNKNOWN_SAFETENSORS


def is_rife_state(keys: list[str]) -> bool:
    """A RIFE IFNet `flownet` state dict (a DDP `module.` prefix allowed)."""
    names = {k.removeprefix("module.") for k in keys}
    return "block0.conv0.0.0.weight" in names and "block0.lastconv.0.weight" in names


def _is_lora_key(key: str) -> bool:
    return key.endswith(
        (".lora_down.weight", ".lora_up.weight", ".lora_A.weight", ".lora_B.weight")
    )


def _arch_from_context_width(tensors: dict[str, dict], lora: bool = False) -> str:
    """sd15/sd2/sdxl from the input width of a cross-attention key projection."""
    for name, info in tensors.items():
        # Kohya LoRA names flatten the dots: ..._attn2_to_k.lora_down.weight
        if lora:
            matches = ("attn2_to_k" in name or "attn2.to_k" in name) and (
                "lora_down" in name or "lora_A" in name
            )
        else:
            matches = name.endswith("attn2.to_k.weight")
        shape = info.get("shape") if isinstance(info, dict) else None
        if matches and isinstance(shape, list) and len(shape) == 2:
            return _CONTEXT_WIDTH_ARCH.get(int(shape[1]), "unknown")
    return "unknown"


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
    if own in ARCHS:
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
    if isinstance(config, dict) and config.get("_class_name") == "ControlNetModel":
        return config
    return None


def _controlnet_folder_arch(path: Path, config: dict) -> str:
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
