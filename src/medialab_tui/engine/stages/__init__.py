"""Stage types, one package each (`stages/<type>/spec.py` and `run.py`).

`STAGES` maps a pipeline's `type` to its spec; it is built from the packages
found here, so adding a stage means adding its folder and nothing else.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping
from typing import Any

from medialab_tui.engine.stages.base import StageParams, StageSpec


def _discover() -> dict[str, StageSpec]:
    specs = []
    for info in pkgutil.iter_modules(__path__):
        if info.ispkg:
            module = importlib.import_module(f"{__name__}.{info.name}.spec")
            spec: StageSpec = module.SPEC
            if spec.type != info.name:
                raise ImportError(f"stage package {info.name} declares type {spec.type!r}")
            specs.append(spec)
    return {spec.type: spec for spec in sorted(specs, key=lambda s: (s.order, s.type))}


STAGES: dict[str, StageSpec] = _discover()

# Keys medialab before the typed worker protocol kept inside a job's parameters
# (its model and extras, now kept with the run); old rows may still hold them.
_LEGACY_JOB_KEYS = ("_model", "_extras")


def job_params(stage: str, raw: Mapping[str, Any]) -> StageParams:
    """A job's stored parameters as the stage's typed model."""
    return STAGES[stage].params.model_validate(
        {k: v for k, v in raw.items() if k not in _LEGACY_JOB_KEYS}
    )


# Stage types of the contract (SPEC §4) that this version does not run yet.
PLANNED: tuple[str, ...] = ()

__all__ = ["PLANNED", "STAGES", "StageParams", "StageSpec", "job_params"]
