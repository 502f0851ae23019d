"""Pick the device and dtype the worker computes on."""

from __future__ import annotations

import torch


def pick_device(wanted: str = "auto") -> str:
    """`cuda` when there is a GPU, then Apple's `mps`, else `cpu`."""
    if wanted != "auto":
        return wanted
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def pick_dtype(device: str, wanted: str = "auto") -> torch.dtype:
    """Half precision on accelerators (bf16 where supported), float32 on the CPU."""
    if wanted != "auto":
        return getattr(torch, wanted)
    if device == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device == "mps":
        return torch.float16
    return torch.float32


def memory_budget(device: str, configured_gb: float) -> int:
    """Bytes the pipeline cache may hold: configured, or most of the device's memory."""
    if configured_gb > 0:
        return int(configured_gb * 1024**3)
    if device == "cuda":
        return int(torch.cuda.get_device_properties(0).total_memory * 0.8)
    import os

    pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return int(pages * 0.5)
