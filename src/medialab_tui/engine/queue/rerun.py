"""`medialab rerun`: repeat the stage that made an artifact, with the same inputs;
and the settings that made an artifact, as a pipeline document for the builder.

The new run has one stage (the artifact's), one input item (the artifact's own
prompt, seed and parent images) and one output, so on the same machine the
pixels come out identical.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medialab_tui.engine.pipeline import SEED_MAX, parse_pipeline
from medialab_tui.engine.queue.resolve import Prepared, prepare
from medialab_tui.engine.stages import job_params
from medialab_tui.errors import InputError
from medialab_tui.interop.recipe import IMPORT_STAGE, imported_pipeline
from medialab_tui.store.db import Store
from medialab_tui.store.tables import Artifact, Job, Run


def prepare_rerun(store: Store, artifact: Artifact) -> Prepared:
    """A one-stage pipeline that makes `artifact` again."""
    if artifact.stage == IMPORT_STAGE:
        raise InputError(
            f"a{artifact.id} was imported, not made by a stage here: `medialab show "
            f"a{artifact.id} --toml` writes the pipeline that makes it again"
        )
    with store.read() as s:
        job = s.get(Job, artifact.job_id)
        run = s.get(Run, artifact.run_id)
    if job is None or run is None:
        raise InputError(f"the job that made a{artifact.id} is no longer in the store")
    stage = job_params(job.stage, job.params).model_dump(exclude_none=True)
    if "per_input" in stage:
        stage["per_input"] = 1
    inputs: dict[str, object] = {"negative": job.item.get("negative", "")}
    if artifact.seed is not None:
        inputs["seeds"] = [artifact.seed]
    files = _input_files(artifact, job.item)
    if files:
        inputs.update(files)
        if job.item.get("prompt"):
            inputs["prompts"] = [job.item["prompt"]]
    else:
        inputs["prompts"] = [job.item.get("prompt", "")]
    document = {"name": f"rerun of a{artifact.id}", "inputs": inputs, "stages": [stage]}
    source = f"rerun of a{artifact.id}"
    pipeline = parse_pipeline(document, source)
    prepared = prepare(store, pipeline, source, Path("/"))
    # The wildcard lists the original job read, not the files as they are now.
    extras = run.pipeline.get("extras") or []
    wildcards = extras[job.stage_index].get("wildcards") if job.stage_index < len(extras) else None
    if wildcards is not None and prepared.extras:
        prepared.extras[0] = prepared.extras[0].model_copy(update={"wildcards": wildcards})
    return prepared


def pipeline_settings(store: Store, artifact: Artifact) -> dict[str, Any]:
    """The pipeline document (the shape of a pipeline file) that makes `artifact` again:
    its run's stages up to the artifact's, from the input it came from (for an imported
    image, a txt2img from the settings it carries: `interop.recipe`).

    The artifact's lineage is followed back through its run as far as one output
    led to the next: to the run's own input (its prompt, seed, image), or to a job
    that started from several images (a blend) or from a prompt edited in review,
    which then become the inputs. The first stage makes one output, with the
    ancestor's own seed; a later stage's outputs take seeds from the image before,
    so its `per_input` is cut to the fewest outputs that still include the ancestor.
    """
    if artifact.stage == IMPORT_STAGE:
        document = imported_pipeline(store, artifact.params, f"a{artifact.id}")
        return parse_pipeline(document, f"settings of a{artifact.id}").to_dict()
    with store.read() as s:
        run = s.get(Run, artifact.run_id)
        job = s.get(Job, artifact.job_id)
        if job is None or run is None:
            raise InputError(f"the job that made a{artifact.id} is no longer in the store")
        chain: list[tuple[Job, Artifact]] = [(job, artifact)]
        while True:
            item = chain[0][0].item
            parents = item.get("parents") or []
            if len(parents) != 1 or "edited_from" in item:
                break
            parent = s.get(Artifact, parents[0])
            parent_job = s.get(Job, parent.job_id) if parent is not None else None
            if parent is None or parent_job is None or parent_job.run_id != run.id:
                break
            chain.insert(0, (parent_job, parent))
    start, first = chain[0]
    stages = [dict(run.pipeline["stages"][j.stage_index]) for j, _ in chain]
    seed = first.seed if first.seed is not None else start.item.get("seed")
    for index, (stage, (made_by, made)) in enumerate(zip(stages, chain, strict=True)):
        # A swept stage makes the artifact's cell only: its values, as its job ran them
        # (a later stage's swept seed stays a sweep of that one seed).
        for key in stage.pop("sweep", None) or {}:
            if key in made_by.params:
                stage[key] = made_by.params[key]
            elif key == "seed" and index > 0:
                stage["sweep"] = {"seed": [made_by.item.get("seed")]}
        if "per_input" not in stage:
            continue
        base = made_by.item.get("seed")
        stage["per_input"] = 1
        if index > 0 and made.seed is not None and base is not None:
            stage["per_input"] = (made.seed - int(base)) % (SEED_MAX + 1) + 1
    inputs: dict[str, Any] = {"negative": start.item.get("negative", "")}
    if seed is not None:
        inputs["seeds"] = [seed]
    files = _input_files(artifact, start.item)
    inputs.update(files)
    if start.item.get("prompt") or not files:
        inputs["prompts"] = [start.item.get("prompt", "")]
    document = {
        "name": run.name,
        "mode": run.mode,
        "expand": run.pipeline.get("expand", "product"),
        "inputs": inputs,
        "stages": stages,
    }
    return parse_pipeline(document, f"settings of a{artifact.id}").to_dict()


def _input_files(artifact: Artifact, item: dict[str, Any]) -> dict[str, list[str]]:
    """The images and videos a job started from, as `[inputs]` keys (none when it
    started from a prompt); a file that is gone is an InputError."""
    files = {kind: list(item.get(kind) or []) for kind in ("images", "videos")}
    missing = [p for paths in files.values() for p in paths if not Path(p).exists()]
    if missing:
        raise InputError(f"a{artifact.id} was made from {missing[0]}, which no longer exists")
    return {kind: paths for kind, paths in files.items() if paths}
