"""What every stage declares: its typed parameters and what it takes and gives.

The parameter models are shared by the pipeline-file parser, the CLI and the
TUI's forms, so the three can never disagree about a range or a default.
Stage modules import no torch: the worker imports the code that runs them.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

Kind = Literal["prompt", "image", "video"]

# The worker's `loading.SAMPLERS` has the same names (a test keeps them in step).
Sampler = Literal[
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
]
SAMPLERS: tuple[str, ...] = Sampler.__args__  # type: ignore[attr-defined]

# Sizes the diffusion models accept: positive multiples of 8 up to 4096.
Dimension = Annotated[int, Field(ge=8, le=4096, multiple_of=8)]
Steps = Annotated[int, Field(ge=1, le=500)]
PerInput = Annotated[int, Field(ge=1, le=64)]


class StageParams(BaseModel):
    """Keys every stage has. Unknown keys and wrong types are errors."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    type: str
    review: bool = Field(default=False, description="Pause the run after this stage")


@dataclass(frozen=True)
class StageSpec:
    """A stage type: its name, its parameter model and its input/output kinds."""

    type: str
    title: str
    takes: Kind
    gives: Kind
    params: builtins.type[StageParams]
    uses_model: bool
    # The model kinds (registry `kind`) that the stage's `model` key accepts.
    model_kinds: tuple[str, ...] = ()
    # Built-in model names that need no registry entry.
    builtin_models: tuple[str, ...] = ()
