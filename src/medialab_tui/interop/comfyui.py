"""ComfyUI's `prompt` graph (the API form it saves in every PNG) read back as settings.

The graph is `{node_id: {"class_type": …, "inputs": {…}}}`; an input that is a link
reads `[node_id, output_index]`. The generation is found the way a person reads the
workflow: from the image that was saved back to the VAE decode and the sampler that
made its latent, then from the sampler up its links to the prompts, the model (through
any LoRA loaders) and the empty latent that set the size.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

Graph = dict[str, dict[str, Any]]

SAMPLERS = frozenset({"KSampler", "KSamplerAdvanced", "SamplerCustom", "SamplerCustomAdvanced"})
OUTPUTS = frozenset({"SaveImage", "PreviewImage", "SaveAnimatedWEBP", "SaveAnimatedPNG"})
CHECKPOINT_LOADERS = {
    "CheckpointLoaderSimple": "ckpt_name",
    "CheckpointLoader": "ckpt_name",
    "ImageOnlyCheckpointLoader": "ckpt_name",
    "UNETLoader": "unet_name",
    "UnetLoaderGGUF": "unet_name",
}
LORA_LOADERS = frozenset({"LoraLoader", "LoraLoaderModelOnly"})
# Nodes whose inputs hold the prompt text, in the order they are read.
TEXT_INPUTS = ("text", "text_g", "t5xxl", "clip_l", "text_l", "string", "value", "prompt")


def _link(value: Any) -> str | None:
    """The node id an input links to, or None for a literal value."""
    if isinstance(value, list) and len(value) == 2 and isinstance(value[1], int):
        return str(value[0])
    return None


def _node(graph: Graph, node_id: str | None) -> dict[str, Any] | None:
    node = graph.get(node_id) if node_id is not None else None
    return node if isinstance(node, dict) and isinstance(node.get("inputs"), dict) else None


def _upstream(
    graph: Graph, start: str | None, wanted: Callable[[dict[str, Any]], bool]
) -> tuple[str, dict[str, Any]] | None:
    """The nearest node up the links from `start` (itself included) that is `wanted`."""
    queue: deque[str] = deque([start] if start is not None else [])
    seen: set[str] = set()
    while queue:
        node_id = queue.popleft()
        if node_id in seen:
            continue
        seen.add(node_id)
        node = _node(graph, node_id)
        if node is None:
            continue
        if wanted(node):
            return node_id, node
        for value in node["inputs"].values():
            linked = _link(value)
            if linked is not None:
                queue.append(linked)
    return None


def _is(*classes: str) -> Callable[[dict[str, Any]], bool]:
    return lambda node: node.get("class_type") in classes


def _input(graph: Graph, node: dict[str, Any], *names: str) -> Any:
    """A literal input, following a link to a node that holds the value (a primitive)."""
    for name in names:
        if name not in node["inputs"]:
            continue
        value = node["inputs"][name]
        linked = _link(value)
        if linked is None:
            return value
        source = _node(graph, linked)
        if source is not None:
            for key in (name, *TEXT_INPUTS, "seed", "noise_seed", "int", "float", "number"):
                held = source["inputs"].get(key)
                if held is not None and _link(held) is None:
                    return held
    return None


def _sampler(graph: Graph) -> tuple[str, dict[str, Any]] | None:
    """The sampler whose latent became the saved image; else the last sampler."""
    for node_id in sorted(graph, key=_order):
        node = _node(graph, node_id)
        if node is not None and node.get("class_type") in OUTPUTS:
            found = _upstream(graph, node_id, lambda n: n.get("class_type") in SAMPLERS)
            if found is not None:
                return found
    samplers = [i for i in graph if (_node(graph, i) or {}).get("class_type") in SAMPLERS]
    if not samplers:
        return None
    last = max(samplers, key=_order)
    return last, graph[last]


def _order(node_id: str) -> tuple[int, str]:
    return (int(node_id), "") if node_id.isdigit() else (1 << 62, node_id)


def _text(graph: Graph, start: str | None) -> str | None:
    found = _upstream(graph, start, lambda n: any(k in n["inputs"] for k in TEXT_INPUTS))
    if found is None:
        return None
    value = _input(graph, found[1], *TEXT_INPUTS)
    return value if isinstance(value, str) else None


def read_prompt_graph(graph: Graph) -> dict[str, Any]:
    """The settings a ComfyUI `prompt` graph made its image with (keys as in SPEC §8's
    imported `params`, plus `scheduler`, `denoise`, `guidance` and `loras` when found)."""
    found = _sampler(graph)
    if found is None:
        return {}
    _, sampler = found
    kind = sampler.get("class_type")
    out: dict[str, Any] = {}
    guider = _node(graph, _link(sampler["inputs"].get("guider")))
    conditioned = guider if guider is not None else sampler
    positive = conditioned["inputs"].get("positive") or conditioned["inputs"].get("conditioning")
    out["prompt"] = _text(graph, _link(positive))
    out["negative"] = _text(graph, _link(conditioned["inputs"].get("negative")))
    guidance = _upstream(graph, _link(positive), _is("FluxGuidance", "CLIPTextEncodeFlux"))
    if guidance is not None:
        out["guidance"] = _input(graph, guidance[1], "guidance")

    if kind in ("KSampler", "KSamplerAdvanced", "SamplerCustom"):
        out["seed"] = _input(graph, sampler, "seed", "noise_seed")
    else:
        noise = _upstream(graph, _link(sampler["inputs"].get("noise")), _is("RandomNoise"))
        out["seed"] = _input(graph, noise[1], "noise_seed") if noise else None
    out["cfg"] = _input(graph, conditioned, "cfg")
    out["steps"] = _input(graph, sampler, "steps")
    out["sampler"] = _input(graph, sampler, "sampler_name")
    out["scheduler"] = _input(graph, sampler, "scheduler")
    out["denoise"] = _input(graph, sampler, "denoise")
    sigmas = _upstream(graph, _link(sampler["inputs"].get("sigmas")), _is("BasicScheduler"))
    if sigmas is not None:
        out["steps"] = _input(graph, sigmas[1], "steps")
        out["scheduler"] = _input(graph, sigmas[1], "scheduler")
        out["denoise"] = _input(graph, sigmas[1], "denoise")
    picker = _upstream(graph, _link(sampler["inputs"].get("sampler")), _is("KSamplerSelect"))
    if picker is not None:
        out["sampler"] = _input(graph, picker[1], "sampler_name")

    model_link = (guider or sampler)["inputs"].get("model")
    loras: list[dict[str, Any]] = []
    node_id = _link(model_link)
    seen: set[str] = set()
    while node_id is not None and node_id not in seen:
        seen.add(node_id)
        node = _node(graph, node_id)
        if node is None:
            break
        class_type = node.get("class_type")
        if class_type in LORA_LOADERS:
            loras.append(
                {
                    "name": _input(graph, node, "lora_name"),
                    "weight": _input(graph, node, "strength_model"),
                }
            )
        if class_type in CHECKPOINT_LOADERS:
            out["model"] = _input(graph, node, CHECKPOINT_LOADERS[class_type])
            break
        node_id = _link(node["inputs"].get("model"))
    if loras:
        out["loras"] = loras[::-1]  # nearest the checkpoint first, as they were applied

    latent = _upstream(
        graph,
        _link(sampler["inputs"].get("latent_image")),
        lambda n: (
            "width" in n["inputs"] and "height" in n["inputs"] or n.get("class_type") == "VAEEncode"
        ),
    )
    if latent is not None and latent[1].get("class_type") != "VAEEncode":
        out["width"] = _input(graph, latent[1], "width")
        out["height"] = _input(graph, latent[1], "height")
    elif latent is not None:
        image = _upstream(graph, _link(latent[1]["inputs"].get("pixels")), _is("LoadImage"))
        if image is not None:
            out["init_image"] = _input(graph, image[1], "image")
    return {k: v for k, v in out.items() if v is not None}
