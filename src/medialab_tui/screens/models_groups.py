"""How the Models screen sorts the registry: by family, then kind, then name; and
which root each model came from. Plain functions of the model views (no Textual).

A family's models stay together whatever their kind, so an SDXL LoRA sits under its
SDXL checkpoints: what runs with what is what a person scanning a long list is after.
Models that belong to no family (upscalers, interpolators, detectors, a LoRA whose
base could not be told) are grouped by kind after the families.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from medialab_tui.engine.families import FAMILIES, family_of
from medialab_tui.engine.roots import Root
from medialab_tui.store.views import ModelView

# Inside a group: what runs first, then what is added to it.
KIND_ORDER = (
    "checkpoint",
    "video",
    "diffusion_model",
    "lora",
    "controlnet",
    "vae",
    "text_encoder",
    "embedding",
)
# Groups of models with no family, by kind, in this order after the families.
KIND_GROUPS = {
    "upscaler": "Upscalers",
    "interpolator": "Interpolators",
    "detector": "Detectors",
    "checkpoint": "Checkpoints, family unknown",
    "diffusion_model": "Diffusion models, family unknown",
    "lora": "LoRAs, family unknown",
    "controlnet": "ControlNets, family unknown",
    "vae": "VAEs",
    "text_encoder": "Text encoders",
    "clip_vision": "CLIP vision",
    "embedding": "Embeddings, family unknown",
    "hypernetwork": "Hypernetworks",
}
OTHER_GROUP = "Not recognised"
BROKEN_GROUP = "Damaged files"


@dataclass(frozen=True)
class Group:
    """A heading of the Models table and the models under it, in order."""

    key: str  # a family's name, or `kind:<kind>`
    title: str
    models: tuple[ModelView, ...]


# Families in the order they came out, which is how people who use several think of
# them; a family not named here follows the named ones of its kind, by package name.
ERA = ("sd15", "sd2", "sdxl", "sd3", "flux", "svd", "ltx", "wan")


def _family_order() -> list[str]:
    """Image families first, then video families, each oldest first."""
    return sorted(
        FAMILIES,
        key=lambda name: (
            FAMILIES[name].kind == "video",
            ERA.index(name) if name in ERA else len(ERA),
            name,
        ),
    )


def group_key(m: ModelView) -> tuple[str, str]:
    """(group key, title) of a model's group."""
    family = family_of(m.arch)
    if family is not None and m.kind != "broken":
        return family.name, family.title
    if m.kind == "broken":
        return "kind:broken", BROKEN_GROUP
    title = KIND_GROUPS.get(m.kind)
    return (f"kind:{m.kind}", title) if title else ("kind:other", OTHER_GROUP)


def _kind_rank(kind: str) -> tuple[int, str]:
    return (KIND_ORDER.index(kind) if kind in KIND_ORDER else len(KIND_ORDER), kind)


def grouped(models: Sequence[ModelView]) -> list[Group]:
    """`models` in their groups: families (image, then video), then the kinds without a
    family, then what was not recognised and damaged files; inside each group by kind
    (checkpoints first), then name."""
    members: dict[str, list[ModelView]] = {}
    titles: dict[str, str] = {}
    for m in models:
        key, title = group_key(m)
        members.setdefault(key, []).append(m)
        titles[key] = title
    order = [
        *_family_order(),
        *(f"kind:{kind}" for kind in KIND_GROUPS),
        "kind:other",
        "kind:broken",
    ]
    return [
        Group(
            key,
            titles[key],
            tuple(sorted(members[key], key=lambda m: (*_kind_rank(m.kind), m.name.lower()))),
        )
        for key in order
        if key in members
    ]


def root_of(m: ModelView, roots: Sequence[Root], data_root: Path) -> Root | None:
    """The root a model was found under, with where that root comes from.

    The registry records it (`ModelView.root`: relative to the data directory, or
    absolute); a row from before roots were recorded is placed by its path, under the
    deepest root it is inside (roots can nest). A recorded root that is no longer
    configured is still named, with no source.
    """
    if m.root:
        path = Path(data_root, m.root)
        return next((r for r in roots if r.path == path), Root(path))
    inside = [r for r in roots if Path(m.path).is_relative_to(r.path)]
    return max(inside, key=lambda r: len(r.path.parts), default=None)


def root_label(root: Root | None) -> str:
    """A root in a few characters, for the table: `data` for the data directory's
    `models/`, else the folder's name (`loras`, `Stable-diffusion`, `sd-models`)."""
    if root is None:
        return ""
    return "data" if root.source == "data" else root.path.name
