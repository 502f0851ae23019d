"""`medialab rerun`: repeat the stage that made an artifact, with the same inputs.

The new run has one stage (the artifact's), one input item (the artifact's own
prompt, seed and parent images) and one output, so on the same machine the
pixels come out identical.
"""

from __future__ import annotations

from pathlib import Path

from medialab_tui.engine.pipeline import parse_pipeline
from medialab_tui.engine.queue.resolve import Prepared, prepare
from medialab_tui.engine.stages import job_params
from medialab_tui.errors import InputError
from medialab_tui.store.db import Store
from medialab_tui.store.tables import Artifact, Job, Run


def prepare_rerun(store: Store, artifact: Artifact) -> Prepared:
    """A one-stage pipeline that makes `artifact` again."""
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
    if job.item.get("images"):
        missing = [p for p in job.item["images"] if not Path(p).exists()]
        if missing:
            raise InputError(f"a{artifact.id} was made from {missing[0]}, which no longer exists")
        inputs["images"] = list(job.item["images"])
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
