"""What any medialab process may ask of the queue: submit, cancel, retry, reorder,
pause, resume, approve. The CLI and the TUI both go through here.

Requests are writes to the store, checked and recorded as events in the same
transaction; the engine host notices them on its next poll (≤ 0.2 s). Nothing
here talks to the worker, so a client needs no engine to be running.
"""

from __future__ import annotations

import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import blake3
from PIL import Image, UnidentifiedImageError
from sqlmodel import Session, col, select

from medialab_tui.config import DataDir
from medialab_tui.engine import registry
from medialab_tui.engine.pipeline import SEED_MAX, Pipeline
from medialab_tui.engine.planner import StagePlan, initial_items, next_items, plan
from medialab_tui.engine.stages import STAGES, StageParams
from medialab_tui.errors import InputError, NotFound
from medialab_tui.store.db import Store
from medialab_tui.store.tables import (
    TERMINAL_JOB,
    TERMINAL_RUN,
    Artifact,
    Job,
    Model,
    Run,
    Setting,
    utcnow,
)

QUEUE_KEY = "queue_state"
# A run with more jobs than this is submitted only when the operator confirms it.
LARGE_RUN_JOBS = 500
WORKER_KEY = "worker_info"


@dataclass
class Prepared:
    """A validated pipeline with its models resolved and its first jobs planned."""

    pipeline: Pipeline
    source: str
    models: list[dict[str, Any] | None]
    items: list[dict[str, Any]]
    plan: list[StagePlan]
    image_sources: list[Path] = field(default_factory=list)
    # Per stage: resolved LoRAs, ControlNet (with its image), detector, wildcard lists.
    extras: list[dict[str, Any]] = field(default_factory=list)

    @property
    def outputs(self) -> int:
        """Outputs of the whole run, every stage counted."""
        return sum(p.outputs for p in self.plan)

    @property
    def jobs(self) -> int:
        return sum(p.jobs for p in self.plan)

    @property
    def large(self) -> bool:
        """Big enough that submitting it should be confirmed."""
        return self.jobs > LARGE_RUN_JOBS


def parse_ref(ref: str) -> tuple[str, int]:
    """`r12` → ("run", 12), `j3` → ("job", 3), `a7` → ("artifact", 7); bare numbers are runs."""
    text = ref.strip().lower()
    kinds = {"r": "run", "j": "job", "a": "artifact"}
    kind = "run"
    if text[:1] in kinds:
        kind, text = kinds[text[0]], text[1:]
    if not text.isdigit():
        raise InputError(f"'{ref}' is not an id (ids look like r12, j40 or a7)")
    return kind, int(text)


def _model_info(row: Model, store: Store) -> dict[str, Any]:
    info: dict[str, Any] = {
        "name": row.name,
        "path": row.path,
        "arch": row.arch,
        "format": row.format,
        "sha256": row.sha256,
        "demo": row.demo,
    }
    if row.format == "safetensors" and row.kind == "checkpoint":
        # A single file loads offline only with a local diffusers folder of its
        # architecture as the config; prefer a real model's folder to a demo's.
        with store.read() as s:
            folders = s.exec(
                select(Model).where(
                    Model.arch == row.arch, Model.format == "diffusers", Model.kind == "checkpoint"
                )
            ).all()
        folders = sorted(folders, key=lambda m: (m.demo, m.name))
        if not folders:
            raise InputError(
                f"model '{row.name}' is a single file; loading it needs a diffusers folder "
                f"of the same architecture ({row.arch}) in the registry as its config"
            )
        info["config_dir"] = folders[0].path
    return info


# The architectures each diffusion stage can run.
_STAGE_ARCHS = {
    "txt2img": ("sd15", "sdxl"),
    "img2img": ("sd15", "sdxl"),
    "refine": ("sd15", "sdxl", "sdxl-refiner"),
    "detail": ("sd15", "sdxl"),
    "blend": ("sd15", "sdxl"),
}


def _lookup(store: Store, ref: str, kinds: tuple[str, ...], where: str) -> Model:
    try:
        return registry.resolve(store, ref, kinds=kinds)
    except InputError as exc:
        raise InputError(f"{where}: {exc}") from None


def _resolve_stage_model(store: Store, stage: StageParams, index: int, source: str) -> dict | None:
    spec = STAGES[stage.type]
    ref = getattr(stage, "model", None)
    if not spec.uses_model or ref is None or ref in spec.builtin_models:
        return None
    where = f"{source}: stage {index + 1} ({stage.type}): key 'model'"
    row = _lookup(store, ref, spec.model_kinds, where)
    archs = _STAGE_ARCHS.get(stage.type)
    if archs is not None and row.arch not in archs:
        raise InputError(
            f"{where}: '{ref}' is a {row.arch} model; {stage.type} runs {', '.join(archs)}"
        )
    if stage.type == "refine" and row.arch == "sdxl-refiner" and stage.method != "refiner":  # type: ignore[attr-defined]
        raise InputError(f"{where}: '{ref}' is an SDXL refiner; use method = \"refiner\"")
    return _model_info(row, store)


def _resolve_extras(
    store: Store,
    stage: StageParams,
    index: int,
    source: str,
    model: dict[str, Any] | None,
    base_dir: Path,
    prompts: list[str],
) -> dict[str, Any]:
    """LoRAs, the ControlNet, a detector and wildcard lists a stage needs, checked now
    so that a mistake fails the submit, not a job an hour later."""
    where = f"{source}: stage {index + 1} ({stage.type})"
    extras: dict[str, Any] = {}
    arch = (model or {}).get("arch")
    loras = []
    for i, lora in enumerate(getattr(stage, "loras", None) or []):
        row = _lookup(store, lora.model, ("lora",), f"{where}: key 'loras[{i}].model'")
        if arch and row.arch != arch:
            raise InputError(
                f"{where}: key 'loras[{i}].model': LoRA '{lora.model}' is for {row.arch} "
                f"models, but the stage's model is {arch}"
            )
        loras.append({**_entry(row), "weight": lora.weight})
    if loras:
        extras["loras"] = loras
    control = getattr(stage, "control", None)
    if control is not None:
        row = _lookup(store, control.model, ("controlnet",), f"{where}: key 'control.model'")
        if arch and row.arch != arch:
            raise InputError(
                f"{where}: key 'control.model': ControlNet '{control.model}' is for "
                f"{row.arch} models, but the stage's model is {arch}"
            )
        image = _find_image(control.image, base_dir, f"{where}: key 'control.image'")
        extras["control"] = {**_entry(row), **control.model_dump(), "image": str(image)}
    detector = getattr(stage, "detector", "opencv")
    if detector != "opencv":
        row = _lookup(store, detector, ("detector",), f"{where}: key 'detector'")
        extras["detector"] = _entry(row)
    if stage.type == "prompt_enhance":
        extras["wildcards"] = _wildcards(
            store, stage, [p for p in prompts] if index == 0 else [""], where
        )
    return extras


def _entry(row: Model) -> dict[str, Any]:
    return {"name": row.name, "path": row.path, "arch": row.arch, "sha256": row.sha256}


def _wildcards(
    store: Store, stage: StageParams, prompts: list[str], where: str
) -> dict[str, list[str]]:
    """Every wildcard list the stage can reach, read now: a re-run uses the same lists."""
    folder = store.path.parent / "wildcards"
    todo = [n for p in prompts for n in stage.wildcard_names(p)]  # type: ignore[attr-defined]
    lists: dict[str, list[str]] = {}
    while todo:
        name = todo.pop(0)
        if name in lists:
            continue
        path = folder / f"{name}.txt"
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise InputError(
                f"{where}: wildcard __{name}__ needs {path}, which does not exist"
            ) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"{where}: wildcard file {path} cannot be read ({exc})") from None
        lines = [ln.strip() for ln in text.splitlines()]
        lines = [ln for ln in lines if ln and not ln.startswith("#")]
        if not lines:
            raise InputError(f"{where}: wildcard file {path} has no entries")
        lists[name] = lines
        todo += [n for line in lines for n in stage.wildcard_names(line)]  # type: ignore[attr-defined]
    refers = {
        name: {n for line in lines for n in stage.wildcard_names(line)}  # type: ignore[attr-defined]
        for name, lines in lists.items()
    }
    cycle = _find_cycle(refers)
    if cycle:
        chain = " → ".join(f"__{n}__" for n in cycle)
        raise InputError(f"{where}: wildcards refer to each other in a cycle: {chain}")
    return lists


def _find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """A cycle in `graph` (as the names along it, first repeated at the end), or []."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return []

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return []


def _find_image(raw: str, base: Path, where: str) -> Path:
    path = (base / raw).expanduser() if not Path(raw).is_absolute() else Path(raw)
    if not path.is_file():
        raise InputError(f"{where}: {raw} does not exist")
    try:
        with Image.open(path) as im:
            im.verify()
    except (UnidentifiedImageError, OSError, SyntaxError):
        raise InputError(f"{where}: {raw} is not an image") from None
    return path


def _check_images(pipeline: Pipeline, base: Path, source: str) -> list[Path]:
    return [
        _find_image(raw, base, f"{source}: key 'inputs.images'") for raw in pipeline.inputs.images
    ]


def queue_device(store: Store) -> str:
    """The device the last worker reported, for estimates ("cpu" if none yet)."""
    import json

    with store.read() as s:
        row = s.get(Setting, WORKER_KEY)
    return json.loads(row.value).get("device", "cpu") if row else "cpu"


def prepare(store: Store, pipeline: Pipeline, source: str, base_dir: Path) -> Prepared:
    """Everything `--dry-run` shows, and everything `submit` needs; writes nothing."""
    models = [_resolve_stage_model(store, st, i, source) for i, st in enumerate(pipeline.stages)]
    images = _check_images(pipeline, base_dir, source)
    fallback_seed = random.randrange(SEED_MAX + 1)
    if pipeline.inputs.seeds is None and pipeline.inputs.seed is None:
        # Record the chosen seed so the run can be repeated exactly.
        pipeline = pipeline.model_copy(
            update={"inputs": pipeline.inputs.model_copy(update={"seed": fallback_seed})}
        )
    try:
        items = initial_items(pipeline, fallback_seed)
    except InputError as exc:
        raise InputError(f"{source}: {exc}") from None
    image_map = {raw: str(p) for raw, p in zip(pipeline.inputs.images, images, strict=True)}
    for item in items:
        item["images"] = [image_map.get(i, i) for i in item["images"]]
    prompts = [i["prompt"] for i in items]
    extras = [
        _resolve_extras(store, st, i, source, models[i], base_dir, prompts)
        for i, st in enumerate(pipeline.stages)
    ]
    stage_plan = plan(pipeline, len(items), store, device=queue_device(store), models=models)
    for step in stage_plan:
        if STAGES[step.type].gathers:
            given = (
                len(pipeline.inputs.images)
                if step.index == 0
                else stage_plan[step.index - 1].outputs
            )
            if given < 2:
                raise InputError(
                    f"{source}: stage {step.index + 1} ({step.type}) blends two or more images, "
                    f"but {'inputs.images lists' if step.index == 0 else 'the stage before makes'} "
                    f"{given}"
                )
            weights = getattr(pipeline.stages[step.index], "weights", None)
            if weights is not None and len(weights) != given:
                raise InputError(
                    f"{source}: stage {step.index + 1} ({step.type}): key 'weights' has "
                    f"{len(weights)} values for {given} images"
                )
    return Prepared(pipeline, source, models, items, stage_plan, images, extras)


def _store_input_image(data: DataDir, path: Path) -> str:
    """Copy an input image into `<data>/inputs/` by content; the original is never touched."""
    digest = blake3.blake3(path.read_bytes()).hexdigest()[:24]
    target = data.inputs / f"{digest}{path.suffix.lower()}"
    if not target.exists():
        tmp = target.with_name(f".{target.name}.tmp")
        shutil.copyfile(path, tmp)
        tmp.replace(target)
    return str(target)


def _job_params(
    stage: StageParams, model: dict[str, Any] | None, extras: dict[str, Any] | None
) -> dict[str, Any]:
    params = stage.model_dump(exclude_none=True)
    if model is not None:
        params["_model"] = model
    if extras:
        params["_extras"] = extras
    return params


def _new_jobs(
    session: Session, store: Store, run: Run, stage_index: int, items: list[dict[str, Any]]
) -> int:
    stages = run.pipeline["stages"]
    stage = STAGES[stages[stage_index]["type"]].params.model_validate(stages[stage_index])
    model = run.pipeline.get("models", [None] * len(stages))[stage_index]
    extras = (run.pipeline.get("extras") or [{}] * len(stages))[stage_index]
    for item in items:
        session.add(
            Job(
                run_id=run.id,  # type: ignore[arg-type]
                stage_index=stage_index,
                stage=stage.type,
                priority=run.priority,
                item=item,
                params=_job_params(stage, model, extras),
                user=store.user,
            )
        )
    return len(items)


def submit(store: Store, data: DataDir, prepared: Prepared, *, rerun_of: int | None = None) -> Run:
    """Write the run and its first stage's jobs in one transaction."""
    stored = {str(p): _store_input_image(data, p) for p in prepared.image_sources}
    items = [
        {**item, "images": [stored.get(i, i) for i in item["images"]]} for item in prepared.items
    ]
    document = prepared.pipeline.to_dict()
    document["models"] = prepared.models
    extras = [dict(e) for e in prepared.extras] or [{} for _ in document["stages"]]
    for stage, extra in zip(document["stages"], extras, strict=True):
        if "control" in extra:
            # The run keeps its own copy of the control image, like its input images.
            stored_image = _store_input_image(data, Path(extra["control"]["image"]))
            extra["control"] = {**extra["control"], "image": stored_image}
            stage["control"] = {**stage["control"], "image": stored_image}
    document["extras"] = extras
    with store.write() as s:
        run = Run(
            name=prepared.pipeline.name,
            mode=prepared.pipeline.mode,
            pipeline=document,
            source=prepared.source,
            stage_count=len(prepared.pipeline.stages),
            rerun_of=rerun_of,
            user=store.user,
        )
        s.add(run)
        s.flush()
        count = _new_jobs(s, store, run, 0, items)
        store.record(s, "run.submit", "run", run.id, name=run.name, jobs=count, source=run.source)
    return run


def queue_state(store: Store) -> str:
    with store.read() as s:
        row = s.get(Setting, QUEUE_KEY)
    return row.value if row else "active"


def set_queue_state(store: Store, state: str) -> None:
    """Pause or resume the whole queue (a running job finishes first)."""
    with store.write() as s:
        row = s.get(Setting, QUEUE_KEY) or Setting(key=QUEUE_KEY, value=state)
        row.value = state
        s.add(row)
        store.record(s, f"queue.{'pause' if state == 'paused' else 'resume'}", "queue", None)


def _get(session: Session, ref: str) -> Run | Job | Artifact:
    kind, ident = parse_ref(ref)
    row: Run | Job | Artifact | None
    if kind == "run":
        row = session.get(Run, ident)
    elif kind == "job":
        row = session.get(Job, ident)
    else:
        row = session.get(Artifact, ident)
    if row is None:
        raise NotFound(f"there is no {kind} {ref}")
    return row


def get(store: Store, ref: str) -> Run | Job | Artifact:
    with store.read() as s:
        return _get(s, ref)


def cancel(store: Store, ref: str) -> str:
    """Cancel a run (all its unfinished jobs) or one job; returns what happened."""
    with store.write() as s:
        row = _get(s, ref)
        if isinstance(row, Artifact):
            raise InputError(f"{ref} is an artifact; cancel takes a run or a job")
        if isinstance(row, Job):
            if row.status in TERMINAL_JOB:
                raise InputError(f"job {ref} has already finished ({row.status})")
            _cancel_job(s, row)
            store.record(s, "job.cancel", "job", row.id)
            run = s.get(Run, row.run_id)
            active = run is not None and run.status in ("pending", "running")
            if row.status == "cancelled" and run is not None and active:
                s.flush()
                finish_stage_if_done(s, store, run)
            return f"job j{row.id} {'cancelled' if row.status == 'cancelled' else 'cancelling'}"
        if row.status in TERMINAL_RUN:
            raise InputError(f"run {ref} has already finished ({row.status})")
        jobs = s.exec(
            select(Job).where(Job.run_id == row.id, col(Job.status).in_(("queued", "running")))
        ).all()
        for job in jobs:
            _cancel_job(s, job)
        row.status, row.finished_at = "cancelled", utcnow()
        s.add(row)
        store.record(s, "run.cancel", "run", row.id, jobs=len(jobs))
        return f"run r{row.id} cancelled"


def _cancel_job(session: Session, job: Job) -> None:
    if job.status == "queued":
        job.status, job.finished_at = "cancelled", utcnow()
    else:  # running: the engine stops it at the next step and records the end
        job.cancel_requested = True
    session.add(job)


def retry(store: Store, ref: str) -> str:
    """Put a failed or cancelled job (or every such job of a run) back in the queue."""
    with store.write() as s:
        row = _get(s, ref)
        if isinstance(row, Artifact):
            raise InputError(
                f"{ref} is an artifact; retry takes a run or a job (rerun repeats artifacts)"
            )
        if isinstance(row, Job):
            if row.status not in ("failed", "cancelled"):
                raise InputError(
                    f"job {ref} is {row.status}; only failed or cancelled jobs can be retried"
                )
            run = s.get(Run, row.run_id)
            assert run is not None
            if row.stage_index != run.stage_index:
                raise InputError(f"job {ref} belongs to an earlier stage of run r{run.id}")
            jobs = [row]
        else:
            run = row
            jobs = list(
                s.exec(
                    select(Job).where(
                        Job.run_id == run.id,
                        Job.stage_index == run.stage_index,
                        col(Job.status).in_(("failed", "cancelled")),
                    )
                ).all()
            )
            if not jobs:
                raise InputError(f"run {ref} has no failed or cancelled jobs to retry")
        for job in jobs:
            job.status, job.error, job.error_kind = "queued", "", ""
            job.cancel_requested, job.crashes, job.progress, job.step = False, 0, 0.0, 0
            job.finished_at = None
            s.add(job)
            store.record(s, "job.retry", "job", job.id, attempt=job.attempts + 1)
        if run.status in TERMINAL_RUN:
            run.status, run.finished_at, run.error = "running", None, ""
            s.add(run)
        return f"{len(jobs)} job{'s' if len(jobs) != 1 else ''} of run r{run.id} queued again"


def set_priority(store: Store, ref: str, delta: int) -> int:
    """Move a run's (or a job's) queued work up (+) or down (−); returns the new priority."""
    with store.write() as s:
        row = _get(s, ref)
        if isinstance(row, Artifact):
            raise InputError(f"{ref} is an artifact; priorities belong to runs and jobs")
        row.priority += delta
        s.add(row)
        if isinstance(row, Run):
            for job in s.exec(
                select(Job).where(Job.run_id == row.id, Job.status == "queued")
            ).all():
                job.priority = row.priority
                s.add(job)
        store.record(
            s, "priority", "run" if isinstance(row, Run) else "job", row.id, priority=row.priority
        )
        return row.priority


def approve(
    store: Store,
    ref: str,
    select_refs: list[str] | None = None,
    *,
    edits: dict[str, str] | None = None,
) -> str:
    """Continue a run waiting in review with all, or the selected, outputs of its stage.

    `edits` maps an output (`a12`) to the prompt the next stage should use instead
    of the output's own: an enhanced prompt corrected by hand. The output's file is
    left as it was; the edit is recorded in the approve event and the next job's item.
    """
    with store.write() as s:
        run = _get(s, ref)
        if not isinstance(run, Run):
            raise InputError(f"{ref} is not a run")
        if run.status != "review":
            raise InputError(f"run {ref} is {run.status}, not waiting in review")
        outputs = _stage_outputs(s, run, run.stage_index)
        if select_refs:
            wanted = []
            for sel in select_refs:
                kind, ident = parse_ref(sel if sel[:1].isalpha() else f"a{sel}")
                match = [a for a in outputs if a.id == ident]
                if kind != "artifact" or not match:
                    raise InputError(f"{sel} is not an output of run {ref}'s current stage")
                wanted.extend(match)
            outputs = wanted
        prompts: dict[int, str] = {}
        for edit_ref, prompt in (edits or {}).items():
            kind, ident = parse_ref(edit_ref if edit_ref[:1].isalpha() else f"a{edit_ref}")
            if kind != "artifact" or ident not in {a.id for a in outputs}:
                raise InputError(f"{edit_ref} is not an approved output of run {ref}'s stage")
            prompts[ident] = prompt
        store.record(
            s,
            "run.approve",
            "run",
            run.id,
            selected=[a.id for a in outputs],
            edits={str(k): v for k, v in prompts.items()},
        )
        advance_run(s, store, run, outputs, prompts)
        return (
            f"run r{run.id} approved with {len(outputs)} output{'s' if len(outputs) != 1 else ''}"
        )


def _stage_outputs(session: Session, run: Run, stage_index: int) -> list[Artifact]:
    return list(
        session.exec(
            select(Artifact)
            .join(Job, col(Job.id) == Artifact.job_id)
            .where(
                Artifact.run_id == run.id, Job.stage_index == stage_index, Job.status == "succeeded"
            )
            .order_by(col(Artifact.id))
        ).all()
    )


def advance_run(
    session: Session,
    store: Store,
    run: Run,
    outputs: list[Artifact],
    prompts: dict[int, str] | None = None,
) -> None:
    """Queue the next stage's jobs from `outputs`, or finish the run after its last stage.
    `prompts` replaces the prompt that an output passes on (review edits)."""
    if run.stage_index + 1 >= run.stage_count or not outputs:
        last = run.stage_index + 1 >= run.stage_count
        run.status = "succeeded" if last else "failed"
        run.error = "" if last else f"stage {run.stage_index + 1} made no outputs"
        run.finished_at = utcnow()
        session.add(run)
        store.record(session, f"run.{run.status}", "run", run.id)
        return
    run.stage_index += 1
    run.status = "running"
    session.add(run)
    stage_type = run.pipeline["stages"][run.stage_index]["type"]
    count = _new_jobs(
        session, store, run, run.stage_index, next_items(stage_type, outputs, prompts or {})
    )
    store.record(session, "run.stage", "run", run.id, stage=run.stage_index + 1, jobs=count)


def finish_stage_if_done(session: Session, store: Store, run: Run) -> None:
    """Called by the engine: when the current stage has no work left, move the run on."""
    statuses = session.exec(
        select(Job.status).where(Job.run_id == run.id, Job.stage_index == run.stage_index)
    ).all()
    if any(st in ("queued", "running") for st in statuses):
        return
    if "failed" in statuses:
        first = session.exec(
            select(Job)
            .where(Job.run_id == run.id, Job.stage_index == run.stage_index, Job.status == "failed")
            .order_by(col(Job.id))
        ).first()
        run.status, run.finished_at = "failed", utcnow()
        run.error = f"job j{first.id} failed: {first.error}" if first else "a job failed"
        session.add(run)
        store.record(session, "run.failed", "run", run.id, error=run.error)
        return
    if statuses and all(st == "cancelled" for st in statuses):
        run.status, run.finished_at = "cancelled", utcnow()
        session.add(run)
        store.record(session, "run.cancelled", "run", run.id)
        return
    stage = run.pipeline["stages"][run.stage_index]
    # `checkpoint` pauses after stages marked `review`; `manual` after every stage
    # that has another after it (after the last there is nothing left to approve).
    more = run.stage_index + 1 < run.stage_count
    if more and (run.mode == "manual" or (run.mode == "checkpoint" and stage.get("review"))):
        run.status = "review"
        session.add(run)
        store.record(session, "run.review", "run", run.id, stage=run.stage_index + 1)
        return
    advance_run(session, store, run, _stage_outputs(session, run, run.stage_index))
