"""Tiny random-weight demo models (`medialab models demo`), written with no download.

`diffusion.py` writes the SD1.5/SDXL folders and the single-file checkpoint,
`adapters.py` the LoRA and ControlNet, `video.py` the SVD, Wan and LTX-Video folders,
`flow.py` the Flux and SD3 folders and the Flux LoRA, `upscaler.py` the ESRGAN;
`parts.py` their shared VAE and CLIP parts, `weights.py` draws their weights,
`publish.py` puts each in place atomically. Run in a subprocess of the CLI: building
imports torch.
"""

from __future__ import annotations

from pathlib import Path


def write_demo_models(models_dir: Path) -> list[Path]:
    """Write every demo model into `models_dir` (those already complete are kept)."""
    from medialab_tui.engine.demo.diffusion import write_demo_models as write

    return write(models_dir)
