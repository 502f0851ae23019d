"""A tiny random-weight LoRA and ControlNet for ``demo-sd15``, so both options run offline.

``write_demo_adapters`` writes, beside the demo models:

* ``demo-sd15-lora.safetensors``: a rank-4 LoRA on every attention projection of
  the demo UNet, in the PEFT key layout that diffusers' ``load_lora_weights`` reads;
* ``demo-sd15-controlnet``: a ControlNet made from the demo UNet, saved as a
  diffusers folder (``config.json`` + ``diffusion_pytorch_model.safetensors``).

The demo UNet's cross-attention is 32 wide, which says nothing about its family,
so both weight files carry ``medialab.arch`` in their safetensors metadata, where
``model_files.detect_arch`` looks when the shapes cannot tell. Weights come from
a fixed seed through exact operations, as in ``demo_models``: the files are
byte-identical on every run with the same library versions.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from medialab_tui.engine.demo.publish import (
    MARKER_FILE,
    publish_folder,
    publish_safetensors,
    write_marker,
)

if TYPE_CHECKING:
    import torch

DEMO_SD15_LORA = "demo-sd15-lora.safetensors"
DEMO_SD15_CONTROLNET = "demo-sd15-controlnet"

LORA_RANK = 4
# Projections of every attention block the LoRA patches (diffusers' usual targets).
LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
# The conditioning image is downsampled once per step after the first: the demo
# VAE halves the image once, so two entries make control features the latent's size.
CONTROL_EMBEDDING_CHANNELS = (16, 32)
CONTROLNET_WEIGHTS = "diffusion_pytorch_model.safetensors"

_LORA_SEED = 1
_CONTROLNET_SEED = 2
_ARCH = "sd15"
_NOTE = "random weights: a demo adapter with no meaning"


def write_demo_adapters(models_dir: Path, sd15_folder: Path) -> list[Path]:
    """Write the demo LoRA and ControlNet for the demo SD1.5 model in ``sd15_folder``.

    Returns their paths, whether written now or found complete; an incomplete
    ControlNet folder under the demo name is replaced.
    """
    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    lora = _ensure_lora(models_dir / DEMO_SD15_LORA, Path(sd15_folder))
    controlnet = _ensure_controlnet(models_dir / DEMO_SD15_CONTROLNET, Path(sd15_folder))
    return [lora, controlnet]


# One key only: safetensors writes the metadata in hash order, which differs
# from process to process, and the demo files must come out byte-identical.
_METADATA = {"medialab.arch": _ARCH}


# --- the LoRA -------------------------------------------------------------------


def _ensure_lora(target: Path, sd15_folder: Path) -> Path:
    return publish_safetensors(target, lambda: build_lora_state(sd15_folder), _METADATA)


def build_lora_state(sd15_folder: Path) -> dict[str, torch.Tensor]:
    """A rank-``LORA_RANK`` LoRA for the UNet in ``sd15_folder``, keyed ``unet.<layer>.lora_A/B``.

    PEFT names the layers; both matrices are drawn at random (a trained LoRA's
    ``lora_B`` is not zero, and a zero one would change nothing).
    """
    import torch
    from diffusers import UNet2DConditionModel
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    unet = UNet2DConditionModel.from_pretrained(sd15_folder / "unet")
    unet.add_adapter(
        LoraConfig(r=LORA_RANK, lora_alpha=LORA_RANK, target_modules=list(LORA_TARGETS))
    )
    shapes = {name: tensor.shape for name, tensor in get_peft_model_state_dict(unet).items()}
    generator = torch.Generator(device="cpu").manual_seed(_LORA_SEED)
    state = {}
    for name in sorted(shapes):
        state[f"unet.{name}"] = uniform(shapes[name], generator)
    return state


# --- the ControlNet -------------------------------------------------------------


def _is_complete_controlnet(folder: Path) -> bool:
    return all(
        (folder / name).is_file() for name in ("config.json", CONTROLNET_WEIGHTS, MARKER_FILE)
    )


def _ensure_controlnet(target: Path, sd15_folder: Path) -> Path:
    return publish_controlnet(target, lambda: build_controlnet(sd15_folder), _ARCH)


def publish_controlnet(target: Path, build: Callable[[], torch.nn.Module], arch: str) -> Path:
    """Write the ControlNet `build()` makes as the diffusers folder `target` (config,
    weights tagged with `arch`, marker), unless it is complete."""

    def write(tmp: Path) -> None:
        from safetensors.torch import save_file

        controlnet = build()
        controlnet.save_config(tmp)
        state = {k: v.contiguous() for k, v in sorted(controlnet.state_dict().items())}
        save_file(state, str(tmp / CONTROLNET_WEIGHTS), metadata={"medialab.arch": arch})
        write_marker(tmp, {"demo": True, "arch": arch, "kind": "controlnet", "note": _NOTE})

    return publish_folder(target, _is_complete_controlnet, write)


def build_controlnet(sd15_folder: Path) -> torch.nn.Module:
    """A ControlNet copied from the demo UNet, its zero-initialised layers drawn at random.

    ``from_unet`` starts the control branch at zero (so an untrained ControlNet
    changes nothing); the demo draws those layers so the control image shows.
    """
    import torch
    from diffusers import ControlNetModel, UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(sd15_folder / "unet")
    controlnet = ControlNetModel.from_unet(
        unet, conditioning_embedding_out_channels=CONTROL_EMBEDDING_CHANNELS
    )
    generator = torch.Generator(device="cpu").manual_seed(_CONTROLNET_SEED)
    with torch.no_grad():
        for _name, param in _control_branch(controlnet.named_parameters()):
            if param.ndim >= 2:
                param.copy_(uniform(param.shape, generator))
            else:
                param.zero_()
    return controlnet.eval()


def _control_branch(
    params: Iterable[tuple[str, torch.nn.Parameter]],
) -> list[tuple[str, torch.nn.Parameter]]:
    """The parameters ``from_unet`` does not copy: the conditioning embedding and zero convs."""
    return sorted(((n, p) for n, p in params if n.startswith("controlnet_")), key=lambda np: np[0])


def uniform(shape: torch.Size, generator: torch.Generator) -> torch.Tensor:
    """Uniform in +-1/sqrt(fan_in), drawn serially so every machine gets the same bits."""
    import torch

    fan_in = math.prod(shape[1:])
    bound = 1.0 / math.sqrt(fan_in)
    return torch.rand(shape, generator=generator).mul_(2 * bound).sub_(bound).contiguous()
