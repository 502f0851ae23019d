"""Model families, one package each (`families/<name>/`); see `base.py`.

`FAMILIES` is built from the packages found here, so adding a family means adding
its folder. Detection (`engine/model_files.py`), submit checks, estimates, step
previews and loading all ask the family of a model's `arch`.
"""

from __future__ import annotations

import importlib
import pkgutil

from medialab_tui.engine.families.base import IMAGE_STAGES, VIDEO_STAGES, Family


def _discover() -> dict[str, Family]:
    found = []
    for info in pkgutil.iter_modules(__path__):
        if info.ispkg:
            family: Family = importlib.import_module(f"{__name__}.{info.name}").FAMILY
            if family.name != info.name:
                raise ImportError(f"family package {info.name} declares {family.name!r}")
            found.append(family)
    return {f.name: f for f in sorted(found, key=lambda f: f.name)}


FAMILIES: dict[str, Family] = _discover()
_BY_ARCH: dict[str, Family] = {arch: f for f in FAMILIES.values() for arch in f.archs}
ARCHS: frozenset[str] = frozenset(_BY_ARCH)


def family_of(arch: str) -> Family | None:
    """The family that owns `arch`, or None (upscalers, detectors, unknown files)."""
    return _BY_ARCH.get(arch)


def archs_running(stage: str) -> tuple[str, ...]:
    """Every arch that can run `stage`, in family order."""
    return tuple(a for f in FAMILIES.values() for a, stages in f.archs.items() if stage in stages)


def refiner_archs() -> tuple[str, ...]:
    """Every arch that can do a refiner pass."""
    return tuple(a for f in FAMILIES.values() for a in f.refiners)


__all__ = [
    "ARCHS",
    "FAMILIES",
    "IMAGE_STAGES",
    "VIDEO_STAGES",
    "Family",
    "archs_running",
    "family_of",
    "refiner_archs",
]
