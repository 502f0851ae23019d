"""Builder (SPEC §9.1): compose a pipeline, see what it will cost, run it.

The pipeline being edited is plain data (`self.document`, the shape of a TOML
file). Every edit re-validates it at once with the parser the CLI uses (pure,
no I/O) and shows the first message under its field; the estimate, which needs
the store, is recomputed in a thread worker 0.4 s after the last edit.

The stage form scrolls; the inputs (prompts, negative, seeds, images, videos) sit under it
in a panel of their own that is always on screen. Loading another pipeline (a file,
a preset, settings sent from another screen) over one with unsaved edits, or
removing a stage whose values were edited, asks first.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.markup import escape
from textual.timer import Timer
from textual.widgets import Input, Label, OptionList, Select, Static, TextArea
from textual.worker import Worker, WorkerState

from medialab_tui.engine.pipeline import Pipeline, load_pipeline_file, parse_pipeline, parse_stage
from medialab_tui.engine.stages import STAGES
from medialab_tui.errors import ErrorLoc, InputError
from medialab_tui.presets import Presets, slug, write_pipeline
from medialab_tui.screens.builder_form import (
    SEEDS_HINT,
    PickScreen,
    StageForm,
    TextPrompt,
    error_spot,
    format_seeds,
    parse_seeds,
    pipeline_state,
    stage_values,
)
from medialab_tui.screens.common import BuilderRequest, StudioScreen
from medialab_tui.screens.dialogs import ConfirmScreen
from medialab_tui.text import visible, visible_lines

if TYPE_CHECKING:  # the planner and the queue bring SQLAlchemy: not before the first frame
    from medialab_tui.engine.planner import StagePlan
    from medialab_tui.engine.queue import Prepared

ESTIMATE_DELAY_S = 0.4
SAMPLE_PROMPT = "a lighthouse on a cliff at dusk, oil painting"
DRY_RUN_ITEMS = 6
# Where an `[inputs]` key's message is shown.
INPUT_FIELDS = {
    "inputs.prompts": "in-prompts",
    "inputs.negative": "in-negative",
    "inputs.seeds": "in-seeds",
    "inputs.seed": "in-seeds",
    "inputs.count": "in-seeds",
    "inputs.images": "in-images",
    "inputs.videos": "in-videos",
}
TOP_FIELDS = {"name": "pipe-name", "mode": "pipe-mode", "expand": "pipe-expand"}
# The inputs panel, a row each: name (its widget is `#in-<name>`), editor, placeholder,
# tooltip. The text areas hold one prompt or one path a line.
INPUT_ROWS: tuple[tuple[str, type[Input] | type[TextArea], str, str], ...] = (
    ("prompts", TextArea, "one prompt per line", "One prompt per line"),
    ("negative", Input, "none", "Negative prompt for every job"),
    ("seeds", Input, "random · 1, 2, 3 · seed 7 count 4", SEEDS_HINT),
    ("images", TextArea, "one path per line", "Input image paths, one per line"),
    (
        "videos",
        TextArea,
        "one path per line",
        "Input video paths (mp4, mov, webm, mkv), one per line",
    ),
)


def _duration(seconds: float) -> str:
    if seconds < 1:
        return "<1 s"
    if seconds < 90:
        return f"~{seconds:.0f} s"
    if seconds < 5400:
        return f"~{seconds / 60:.0f} min"
    return f"~{seconds / 3600:.1f} h"


def render_plan(
    plan: list[StagePlan], price_per_hour: float, notices: list[str] | None = None
) -> str:
    """Jobs, outputs and time per stage, then the totals and notices (Rich markup)."""
    lines = []
    for stage in plan:
        basis = "" if stage.basis == "history" else " [dim](guess)[/]"
        lines += [
            f"[b]{stage.index + 1} {stage.type}[/b]",
            f"  {stage.jobs} jobs → {stage.outputs} outputs",
            f"  {_duration(stage.seconds)}{basis}",
        ]
    seconds = sum(s.seconds for s in plan)
    lines += ["", f"[b]Total[/b] {sum(s.jobs for s in plan)} jobs · {_duration(seconds)}"]
    if price_per_hour > 0:
        lines.append(f"  ≈ {price_per_hour * seconds / 3600:.2f} at {price_per_hour}/GPU-hour")
    for notice in notices or []:
        lines += ["", f"[yellow]note[/] {escape(visible(notice))}"]
    return "\n".join(lines)


def render_dry_run(prepared: Prepared, price_per_hour: float) -> str:
    """The plan plus the first stage's jobs, and that nothing was queued."""
    lines = ["[b reverse] Dry run [/] nothing was submitted", "", "[b]First jobs[/b]"]
    for item in prepared.items[:DRY_RUN_ITEMS]:
        what = item["images"][0] if item["images"] else item["prompt"]
        lines.append(f"  seed {item['seed']} · {escape(visible(what))}")
    if len(prepared.items) > DRY_RUN_ITEMS:
        lines.append(f"  … and {len(prepared.items) - DRY_RUN_ITEMS} more")
    return "\n".join([*lines, "", render_plan(prepared.plan, price_per_hour, prepared.notices)])


class BuilderScreen(StudioScreen):
    """Stages and pipeline on the left, the stage's form and inputs, the estimate."""

    TITLE_TEXT = "Builder"
    AUTO_FOCUS = "#stages"
    DEFAULT_CSS = """
    BuilderScreen #builder { height: 1fr; }
    BuilderScreen #builder-left { width: 1fr; min-width: 26; border-right: solid $panel; }
    BuilderScreen #builder-middle { width: 2fr; }
    BuilderScreen #stage-scroll { height: 1fr; padding: 0 1; }
    BuilderScreen #builder-inputs { height: auto; max-height: 70%; padding: 0 1;
                                    border-top: solid $panel; }
    BuilderScreen #builder-right { width: 1fr; min-width: 26; border-left: solid $panel; }
    BuilderScreen .row { height: 1; margin: 1 1 0 1; }
    BuilderScreen .row Label { width: 8; }
    BuilderScreen .row Input, BuilderScreen .row Select { width: 1fr; }
    BuilderScreen .in-row { height: auto; }
    BuilderScreen .in-row Label { width: 12; }
    BuilderScreen .in-row Input { width: 1fr; }
    BuilderScreen .in-row TextArea { width: 1fr; padding: 0; }
    BuilderScreen #in-prompts { height: 3; }
    BuilderScreen #in-images, BuilderScreen #in-videos { height: 2; }
    BuilderScreen #form-slot { height: auto; }
    BuilderScreen #stages { height: 1fr; min-height: 4; margin: 0 1; }
    BuilderScreen .field-error { color: $error; height: auto; }
    BuilderScreen .field-error.-empty { display: none; }
    BuilderScreen #builder-left .field-error { padding-left: 9; }
    BuilderScreen #builder-inputs .field-error { padding-left: 12; }
    BuilderScreen #estimate { padding: 0 1; }
    BuilderScreen #estimate.-invalid { color: $error; }
    """
    BINDINGS = [
        Binding(
            "ctrl+r",
            "run",
            "Run",
            id="builder.run",
            priority=True,
            tooltip="Validate, plan and queue the pipeline, then show the queue",
        ),
        Binding(
            "ctrl+d",
            "dry_run",
            "Dry run",
            id="builder.dry_run",
            priority=True,
            tooltip="Show the jobs and the estimate without queueing anything",
        ),
        Binding(
            "ctrl+s",
            "save",
            "Save",
            id="builder.save",
            priority=True,
            tooltip="Save the pipeline to a TOML file (asks before overwriting)",
        ),
        Binding(
            "ctrl+o",
            "open",
            "Open",
            id="builder.open",
            priority=True,
            tooltip="Load a pipeline TOML file (asks first when there are unsaved edits)",
        ),
        Binding(
            "p",
            "edit_inputs",
            "Inputs",
            id="builder.inputs",
            tooltip="Go to the inputs: prompts, negative, seeds, images and videos",
            show=False,
        ),
        Binding(
            "a",
            "add_stage",
            "Add stage",
            id="builder.add_stage",
            tooltip="Add a stage of a chosen type after the selected one",
        ),
        Binding(
            "x,delete",
            "remove_stage",
            "Remove stage",
            id="builder.remove_stage",
            tooltip="Remove the selected stage (asks first when its values were edited)",
        ),
        Binding(
            "left_square_bracket",
            "move_stage(-1)",
            "Stage up",
            id="builder.stage_up",
            tooltip="Move the selected stage one place earlier",
            show=False,
        ),
        Binding(
            "right_square_bracket",
            "move_stage(1)",
            "Stage down",
            id="builder.stage_down",
            tooltip="Move the selected stage one place later",
            show=False,
        ),
        Binding(
            "P",
            "save_preset",
            "Save preset",
            id="builder.save_preset",
            tooltip="Save as a new version of the preset named like the pipeline",
        ),
        Binding(
            "L",
            "load_preset",
            "Presets",
            id="builder.load_preset",
            tooltip="Load a saved preset version (asks first when there are unsaved edits)",
        ),
        Binding(
            "i",
            "pick_images",
            "Pick images",
            id="builder.pick_images",
            tooltip="Pick input images in the gallery (b on an image sends it here)",
        ),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.document: dict[str, Any] = {}
        self.source = "builder"
        self.base_dir = Path.cwd()
        self.path: Path | None = None
        self.selected = 0
        self.ready = False
        self.seeds_error = ""
        self.suggestions: dict[str, list[str]] = {}
        self.error_stage: int | None = None
        self.form: StageForm | None = None
        self._generation = 0
        self._estimate_timer: Timer | None = None
        self._submitting = False
        self._submitting_document: dict[str, Any] = {}
        # Requests that came before the first document was shown, taken once it is.
        self._early_requests: list[BuilderRequest] = []
        # What the pipeline was at the last load, save or run (`pipeline_state`), and
        # each stage's values when it was loaded or added: edits are told from these.
        self._kept_state: dict[str, Any] = {}
        self._stage_origins: list[dict[str, Any]] = []

    # -- layout ------------------------------------------------------------------

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="builder"):
            with Vertical(id="builder-left"):
                yield Static("Pipeline", classes="panel-title")
                with Horizontal(classes="row"):
                    yield Label("name")
                    yield Input(id="pipe-name", compact=True, tooltip="The run's name")
                yield self._error_line("pipe-name")
                with Horizontal(classes="row"):
                    yield Label("mode")
                    yield Select(
                        [(m, m) for m in ("auto", "checkpoint", "manual")],
                        value="auto",
                        allow_blank=False,
                        id="pipe-mode",
                        compact=True,
                        tooltip="auto: run through; checkpoint: pause after stages marked "
                        "review; manual: pause after every stage",
                    )
                yield self._error_line("pipe-mode")
                with Horizontal(classes="row"):
                    yield Label("expand")
                    yield Select(
                        [(m, m) for m in ("product", "zip")],
                        value="product",
                        allow_blank=False,
                        id="pipe-expand",
                        compact=True,
                        tooltip="product: every prompt with every seed; zip: pair them in order",
                    )
                yield self._error_line("pipe-expand")
                yield Static("Stages", classes="panel-title")
                yield OptionList(id="stages")
                yield Static("a add · x remove\n[ ] move · p inputs", classes="hint")
            with Vertical(id="builder-middle"):
                # The form scrolls to the focused field, so the scroll needs no focus stop.
                with VerticalScroll(id="stage-scroll", can_focus=False):
                    yield Static("", id="stage-title", classes="panel-title")
                    yield Vertical(id="form-slot")
                # Under the form and outside its scroll: on screen whatever the form's length.
                with Vertical(id="builder-inputs"):
                    yield Static("Inputs [dim](p)[/]", classes="panel-title")
                    yield from self._compose_inputs()
            with VerticalScroll(id="builder-right"):
                yield Static("Estimate", classes="panel-title")
                yield Static("…", id="estimate")

    def _compose_inputs(self) -> ComposeResult:
        for name, editor, placeholder, tooltip in INPUT_ROWS:
            with Horizontal(classes="in-row"):
                yield Label(name)
                yield editor(
                    id=f"in-{name}", compact=True, placeholder=placeholder, tooltip=tooltip
                )
            yield self._error_line(f"in-{name}")

    @staticmethod
    def _error_line(field_id: str) -> Static:
        return Static("", id=f"{field_id}-error", classes="field-error -empty")

    def set_up(self) -> None:
        self._load_initial(self.studio.pipeline_path)

    @property
    def presets(self) -> Presets:
        return Presets(self.studio.data.root / "presets")

    # -- loading -------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="builder-load", exit_on_error=False)
    def _load_initial(self, path: Path | None) -> None:
        """The file from `--pipeline`, else a small txt2img on the first checkpoint."""
        models = self.client.models()
        suggestions = {
            spec.type: [m.name for m in models if m.kind in spec.model_kinds]
            + list(spec.builtin_models)
            for spec in STAGES.values()
        }
        if path is not None:
            try:
                document = load_pipeline_file(path).to_dict()
            except InputError as exc:
                self._on_ui(self.notify, str(exc), severity="error")
            else:
                self._on_ui(self._start, suggestions, document, path)
                return
        checkpoints = suggestions["txt2img"]
        stage: dict[str, Any] = {"type": "txt2img", "steps": 8, "width": 64, "height": 64}
        if checkpoints:
            stage["model"] = checkpoints[0]
        document = {
            "name": "untitled",
            "mode": "auto",
            "expand": "product",
            "inputs": {"prompts": [SAMPLE_PROMPT]},
            "stages": [stage],
        }
        self._on_ui(self._start, suggestions, document, None)

    def _start(
        self, suggestions: dict[str, list[str]], document: dict[str, Any], path: Path | None
    ) -> None:
        self.suggestions = suggestions
        self.set_document(document, path, path)

    def _on_ui(self, callback: Callable[..., object], *args: Any, **kwargs: Any) -> None:
        """From a worker: run `callback` on the UI thread, unless the app is closing.

        The app takes its screens' widgets down as it closes; a pipeline shown then
        would mount a form into a screen that is going away, half built.
        """

        def if_running() -> None:
            if self.app.is_running:
                callback(*args, **kwargs)

        self.app.call_from_thread(if_running)

    def set_document(
        self, document: dict[str, Any], source: Path | None, path: Path | None
    ) -> None:
        """Show a pipeline document in every widget; `path` is where ctrl+s saves it.

        What it shows counts as saved: only edits after this are unsaved."""
        self.document = copy.deepcopy(document)
        self.document.setdefault("inputs", {})
        self.source = str(source) if source else "builder"
        if path is not None:
            self.path = path
            self.base_dir = path.parent
        inputs = self.document["inputs"]
        self.document["name"] = str(self.document.get("name", ""))
        self.query_one("#pipe-name", Input).value = self.document["name"]
        self.query_one("#pipe-mode", Select).value = self.document.get("mode", "auto")
        self.query_one("#pipe-expand", Select).value = self.document.get("expand", "product")
        self.query_one("#in-prompts", TextArea).text = "\n".join(inputs.get("prompts", []))
        self.query_one("#in-negative", Input).value = str(inputs.get("negative", ""))
        self.query_one("#in-seeds", Input).value = format_seeds(inputs)
        self.query_one("#in-images", TextArea).text = "\n".join(inputs.get("images", []))
        self.query_one("#in-videos", TextArea).text = "\n".join(inputs.get("videos", []))
        # The inputs as the widgets hold them, so their change events echo the same.
        self.document["inputs"] = self._read_inputs()
        self._keep()
        self._stage_origins = [stage_values(stage) for stage in self.document["stages"]]
        self.selected = 0
        self._refresh_stage_list()
        self._show_form()
        first = not self.ready
        self.ready = True
        if first:
            for request in self._early_requests:
                self._take(request)
            self._early_requests.clear()
        self.changed()

    def _keep(self, document: dict[str, Any] | None = None) -> None:
        """`document` (the one on screen by default) was loaded, saved or run."""
        self._kept_state = pipeline_state(self.document if document is None else document)

    @property
    def unsaved(self) -> bool:
        """The pipeline was edited since it was last loaded, saved or run."""
        return self.ready and pipeline_state(self.document) != self._kept_state

    def replace_document(
        self,
        document: dict[str, Any],
        source: Path | None,
        path: Path | None,
        what: str,
        then: Callable[[], None] | None = None,
    ) -> None:
        """Show `document` instead of the pipeline on screen (`what` names it), asking
        first when that one has unsaved edits; `then` runs once it is shown."""

        def load() -> None:
            self.set_document(document, source, path)
            self.notify(f"Loaded {what}")
            if then is not None:
                then()

        if not self.unsaved:
            load()
            return

        def answered(replace: bool | None) -> None:
            if replace:
                load()
            else:
                self.notify(f"Kept the pipeline on screen; {what} was not loaded")

        name = self.document.get("name") or "untitled"
        question = f"The pipeline '{name}' has unsaved edits. Drop them and load {what}?"
        self.app.push_screen(ConfirmScreen(question, yes="Load", no="Keep"), answered)

    @on(BuilderRequest)
    def _requested(self, request: BuilderRequest) -> None:
        """Images, a model or a pipeline's settings from another screen, delivered
        here by the app."""
        request.stop()  # the app posted it here: it must not bubble back up to the app
        if self.ready:
            self._take(request)
        else:
            self._early_requests.append(request)

    def _take(self, request: BuilderRequest) -> None:
        if request.settings is None:
            self._take_parts(request)
            return
        try:
            document = parse_pipeline(copy.deepcopy(request.settings), "settings").to_dict()
        except InputError as exc:
            self.notify(f"These settings cannot be loaded: {exc}", severity="error")
            return
        what = f"the settings of '{document['name']}'"
        self.replace_document(document, None, None, what, then=lambda: self._take_parts(request))

    def _take_parts(self, request: BuilderRequest) -> None:
        """The images and the model of a request, added to the pipeline on screen."""
        if request.images:
            area = self.query_one("#in-images", TextArea)
            lines = [line for line in area.text.splitlines() if line.strip()]
            lines += [i for i in request.images if i not in lines]
            area.text = "\n".join(lines)
            self._inputs_changed()
            first = STAGES[self.document["stages"][0]["type"]]
            count = f"{len(request.images)} image{'s' if len(request.images) != 1 else ''}"
            if first.takes == "prompt":
                self.notify(
                    f"{count} added to inputs, but stage 1 ({first.type}) takes prompts: "
                    "add a stage that takes images first",
                    severity="warning",
                )
            else:
                self.notify(f"{count} added to inputs")
        if request.model:
            if self.form is not None and "model" in self.form.fields:
                self.form.set_value("model", request.model)
                self.notify(f"Stage {self.selected + 1} now uses {request.model}")
            else:
                self.notify("The selected stage takes no model", severity="warning")

    # -- the stage list and the form -------------------------------------------------

    def _stage_label(self, index: int, stage: dict[str, Any]) -> str:
        # The type and model come from the file as written: shown, neither markup nor sequences.
        kind = escape(visible(str(stage.get("type"))))
        model = escape(visible(str(stage.get("model", ""))))
        mark = " [red]✗[/]" if self.error_stage == index + 1 else ""
        return f"{index + 1} {kind}  [dim]{model}[/]{mark}"

    def _refresh_stage_list(self) -> None:
        stages = self.query_one("#stages", OptionList)
        stages.set_options([self._stage_label(i, s) for i, s in enumerate(self.document["stages"])])
        stages.highlighted = self.selected

    def _show_form(self) -> None:
        """Replace the form with the selected stage's."""
        stage = self.document["stages"][self.selected]
        spec = STAGES[stage["type"]]
        self.query_one("#stage-title", Static).update(
            f"Stage {self.selected + 1} · {spec.type} · {spec.title} ({spec.takes} → {spec.gives})"
        )
        slot = self.query_one("#form-slot")
        slot.remove_children()
        suggestions = {"model": self.suggestions.get(spec.type, [])}
        self.form = StageForm(self.selected, stage, suggestions)
        slot.mount(self.form)
        # A new form starts at its title, wherever the last one was scrolled to.
        self.query_one("#stage-title", Static).scroll_visible(animate=False, top=True)

    @on(OptionList.OptionHighlighted, "#stages")
    def _stage_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        if event.option_index != self.selected and event.option_index < len(
            self.document["stages"]
        ):
            self.selected = event.option_index
            self._show_form()
            self.changed()

    @on(StageForm.Changed)
    def _stage_changed(self, event: StageForm.Changed) -> None:
        stages = self.document.get("stages", [])
        # A form that was replaced may still have messages in flight: ignore them.
        if event.form is not self.form:
            return
        stages[event.form.index] = event.values
        self.query_one("#stages", OptionList).replace_option_prompt_at_index(
            event.form.index, self._stage_label(event.form.index, event.values)
        )
        self.changed()

    # -- top level and inputs ----------------------------------------------------------

    @on(Input.Changed, "#pipe-name")
    def _name_changed(self, event: Input.Changed) -> None:
        self.document["name"] = event.value
        self.changed()

    @on(Select.Changed, "#pipe-mode, #pipe-expand")
    def _top_select_changed(self, event: Select.Changed) -> None:
        key = (event.select.id or "").removeprefix("pipe-")
        self.document[key] = event.value
        self.changed()

    @on(Input.Changed, "#in-negative, #in-seeds")
    @on(TextArea.Changed, "#in-prompts, #in-images, #in-videos")
    def _inputs_changed(self) -> None:
        self.document["inputs"] = self._read_inputs()
        self.changed()

    def _read_inputs(self) -> dict[str, Any]:
        """`[inputs]` from the widgets; a seeds syntax error is kept for the field. Keys
        the panel has no field for stay as the file or settings gave them."""
        shown = {key.removeprefix("inputs.") for key in INPUT_FIELDS}
        before = self.document.get("inputs") or {}
        inputs: dict[str, Any] = {k: v for k, v in before.items() if k not in shown}
        prompts = self.query_one("#in-prompts", TextArea).text.splitlines()
        if prompts := [p.strip() for p in prompts if p.strip()]:
            inputs["prompts"] = prompts
        if negative := self.query_one("#in-negative", Input).value.strip():
            inputs["negative"] = negative
        images = self.query_one("#in-images", TextArea).text.splitlines()
        if images := [i.strip() for i in images if i.strip()]:
            inputs["images"] = images
        videos = self.query_one("#in-videos", TextArea).text.splitlines()
        if videos := [v.strip() for v in videos if v.strip()]:
            inputs["videos"] = videos
        try:
            inputs.update(parse_seeds(self.query_one("#in-seeds", Input).value))
            self.seeds_error = ""
        except InputError as exc:
            self.seeds_error = str(exc)
        return inputs

    # -- validation and the estimate ---------------------------------------------------

    def validate(self) -> tuple[Pipeline | None, InputError | None]:
        """The pipeline as the CLI would parse it, or the parser's first error."""
        if self.seeds_error:
            loc = ErrorLoc(file=self.source, key="inputs.seeds")
            return None, InputError(self.seeds_error, loc=loc, predicate=False)
        try:
            return parse_pipeline(copy.deepcopy(self.document), self.source), None
        except InputError as exc:
            return None, exc

    def changed(self) -> None:
        """Something was edited: show errors now, estimate after a pause in typing."""
        if not self.ready:
            return
        self._generation += 1
        pipeline, error = self.validate()
        self.show_error(error)
        if self._estimate_timer is not None:
            self._estimate_timer.stop()
        if pipeline is None:
            self._show_estimate(str(error), invalid=True)
            return
        generation = self._generation
        self._estimate_timer = self.set_timer(
            ESTIMATE_DELAY_S, lambda: self._estimate(pipeline, generation, dry_run=False)
        )

    def show_error(self, error: InputError | None) -> None:
        """Put a pipeline error under its field, and the selected stage's own errors."""
        spot = error_spot(error) if error is not None else None
        field_errors: dict[str, str] = {}
        stage_error = ""
        stages = self.document.get("stages", [])
        if self.selected < len(stages):
            try:
                parse_stage(stages[self.selected], self.selected + 1, self.source)
            except InputError as exc:
                own = error_spot(exc)
                if own.key:
                    field_errors[own.key] = own.text
                else:
                    stage_error = own.text
        if spot is not None and spot.stage == self.selected + 1:
            if spot.key:
                field_errors.setdefault(spot.key, spot.text)
            else:
                stage_error = stage_error or spot.text
        if self.form is not None:
            self.form.show_errors(field_errors, stage_error)
        targets = {**INPUT_FIELDS, **TOP_FIELDS}
        shown = targets.get(spot.key or "") if spot is not None and spot.stage is None else None
        for field_id in {*INPUT_FIELDS.values(), *TOP_FIELDS.values()}:
            line = self.query_one(f"#{field_id}-error", Static)
            text = spot.text if spot is not None and field_id == shown else ""
            line.update(Text(visible(text)))
            line.set_class(not text, "-empty")
        error_stage = spot.stage if spot is not None else None
        if error_stage != self.error_stage:
            self.error_stage = error_stage
            self._refresh_stage_list()

    def _show_estimate(self, text: str, *, invalid: bool) -> None:
        """A plan (markup), or why the pipeline is invalid (plain text: it quotes values)."""
        estimate = self.query_one("#estimate", Static)
        estimate.update(Text(visible_lines(text)) if invalid else text)
        estimate.set_class(invalid, "-invalid")

    @work(thread=True, exclusive=True, group="builder-estimate", exit_on_error=False)
    def _estimate(self, pipeline: Pipeline, generation: int, *, dry_run: bool) -> None:
        try:
            prepared = self.client.prepare(pipeline, self.source, self.base_dir)
        except InputError as exc:
            self._on_ui(self._estimated, generation, None, exc, dry_run)
        else:
            self._on_ui(self._estimated, generation, prepared, None, dry_run)

    def _estimated(
        self,
        generation: int,
        prepared: Prepared | None,
        error: InputError | None,
        dry_run: bool,
    ) -> None:
        if generation != self._generation:  # edited meanwhile: a newer estimate is coming
            return
        if prepared is None:
            self.show_error(error)
            self._show_estimate(str(error), invalid=True)
            return
        price = self.studio.config.price_per_gpu_hour
        if dry_run:
            self._show_estimate(render_dry_run(prepared, price), invalid=False)
        else:
            self._show_estimate(render_plan(prepared.plan, price, prepared.notices), invalid=False)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """A bug in a worker becomes a notification, not a crash."""
        if event.state == WorkerState.ERROR and event.worker.group.startswith("builder"):
            self._submitting = False
            self.notify(f"Builder: {event.worker.error}", severity="error")

    # -- actions -----------------------------------------------------------------------

    def _blocked(self, error: InputError, what: str) -> None:
        self.show_error(error)
        self._show_estimate(str(error), invalid=True)
        self.notify(str(error), title=f"{what} blocked", severity="error")

    def action_run(self) -> None:
        """Validate, prepare and submit; then show the queue."""
        if not self.ready or self._submitting:
            return
        pipeline, error = self.validate()
        if pipeline is None:
            assert error is not None
            self._blocked(error, "Run")
            return
        self._submitting = True
        self._submitting_document = copy.deepcopy(self.document)
        self._submit(pipeline, self.source, self.base_dir)

    @work(thread=True, exclusive=True, group="builder-submit", exit_on_error=False)
    def _submit(self, pipeline: Pipeline, source: str, base_dir: Path) -> None:
        try:
            prepared = self.client.prepare(pipeline, source, base_dir)
        except InputError as exc:
            self._on_ui(self._submitted, "", exc)
            return
        if prepared.large:
            self._on_ui(self._confirm_large, prepared)
        else:
            self._send(prepared)

    def _confirm_large(self, prepared: Prepared) -> None:
        def answered(yes: bool | None) -> None:
            if yes:
                self.run_worker(
                    lambda: self._send(prepared),
                    thread=True,
                    group="builder-submit",
                    exit_on_error=False,
                )
            else:
                self._submitted("", InputError("not submitted"))

        question = f"This run makes {prepared.jobs} jobs and {prepared.outputs} outputs. Submit it?"
        self.app.push_screen(ConfirmScreen(question, yes="Submit"), answered)

    def _send(self, prepared: Prepared) -> None:
        """Submit (in a worker thread) and report back on the UI thread."""
        try:
            ref = self.client.submit(prepared)
        except InputError as exc:
            self._on_ui(self._submitted, "", exc)
        else:
            self._on_ui(self._submitted, ref, None)

    def _submitted(self, ref: str, error: InputError | None) -> None:
        self._submitting = False
        if error is not None:
            self._blocked(error, "Run")
            return
        self._keep(self._submitting_document)
        self.notify(f"Run {ref} queued")
        self.app.switch_mode("queue")

    def action_dry_run(self) -> None:
        """The plan and the first jobs, with nothing queued."""
        if not self.ready:
            return
        pipeline, error = self.validate()
        if pipeline is None:
            assert error is not None
            self._blocked(error, "Dry run")
            return
        if self._estimate_timer is not None:
            self._estimate_timer.stop()
        self._estimate(pipeline, self._generation, dry_run=True)

    def action_edit_inputs(self) -> None:
        """Put the cursor after the last prompt, the first of the inputs."""
        prompts = self.query_one("#in-prompts", TextArea)
        prompts.focus()
        prompts.move_cursor(prompts.document.end)

    def action_pick_images(self) -> None:
        """Open the gallery to pick input images; `b` there sends one back here."""
        self.app.switch_mode("gallery")
        self.app.notify("Press b on an image to add it to the builder's inputs.")

    def action_add_stage(self) -> None:
        # The stages that can follow the selected one come first, in pipeline order.
        stages = self.document.get("stages", [])
        current = stages[self.selected]["type"] if stages else None
        gives = STAGES[current].gives if current in STAGES else "prompt"
        specs = sorted(STAGES.values(), key=lambda spec: spec.takes != gives)
        options = [
            (
                spec.type,
                f"{spec.type}  {spec.title} ({spec.takes} → {spec.gives})"
                + ("" if spec.takes == gives else f"  [dim]takes {spec.takes}s[/]"),
            )
            for spec in specs
        ]
        self.app.push_screen(PickScreen("Add which stage?", options), self._add_stage)

    def _add_stage(self, stage_type: str | None) -> None:
        if stage_type is None or not self.ready:
            return
        spec = STAGES[stage_type]
        stage: dict[str, Any] = {"type": stage_type}
        models = spec.builtin_models or tuple(self.suggestions.get(stage_type, []))
        if spec.uses_model and models:
            stage["model"] = models[0]
        self.selected = min(self.selected + 1, len(self.document["stages"]))
        self.document["stages"].insert(self.selected, stage)
        self._stage_origins.insert(self.selected, stage_values(stage))
        self._stages_reordered()

    def stage_edited(self, index: int) -> bool:
        """Stage `index` holds values other than those it was loaded or added with."""
        return stage_values(self.document["stages"][index]) != self._stage_origins[index]

    def action_remove_stage(self) -> None:
        """Remove the selected stage; one whose values were edited only once confirmed."""
        stages = self.document.get("stages", [])
        if len(stages) <= 1:
            self.notify("A pipeline needs at least one stage", severity="warning")
            return
        index = self.selected
        if not self.stage_edited(index):
            self._remove_stage(index)
            return
        stage = stages[index]

        def answered(remove: bool | None) -> None:
            # Another pipeline may have been loaded while the question was up.
            if remove and index < len(self.document["stages"]):
                if self.document["stages"][index] is stage:
                    self._remove_stage(index)

        question = f"Stage {index + 1} ({stage['type']}) has edited values. Remove it?"
        self.app.push_screen(ConfirmScreen(question, yes="Remove", no="Keep"), answered)

    def _remove_stage(self, index: int) -> None:
        removed = self.document["stages"].pop(index)
        self._stage_origins.pop(index)
        self.selected = min(index, len(self.document["stages"]) - 1)
        self._stages_reordered()
        self.notify(f"Removed stage {removed['type']}")

    def action_move_stage(self, delta: int) -> None:
        stages = self.document.get("stages", [])
        target = self.selected + delta
        if not 0 <= target < len(stages):
            return
        for values in (stages, self._stage_origins):
            values[self.selected], values[target] = values[target], values[self.selected]
        self.selected = target
        self._stages_reordered()

    def _stages_reordered(self) -> None:
        self._refresh_stage_list()
        self._show_form()
        self.changed()

    def action_open(self) -> None:
        initial = str(self.path) if self.path else ""
        self.app.push_screen(TextPrompt("Open which pipeline file?", initial), self._open)

    def _open(self, text: str | None) -> None:
        if text:
            self._load_file(Path(text).expanduser(), keep_path=True)

    @work(thread=True, exclusive=True, group="builder-load", exit_on_error=False)
    def _load_file(self, path: Path, *, keep_path: bool) -> None:
        try:
            document = load_pipeline_file(path).to_dict()
        except InputError as exc:
            self._on_ui(self.notify, str(exc), severity="error")
            return
        self._on_ui(self.replace_document, document, path, path if keep_path else None, str(path))

    def action_save(self) -> None:
        name = slug(str(self.document.get("name", "")))
        initial = str(self.path) if self.path else f"{name}.toml"
        self.app.push_screen(TextPrompt("Save the pipeline to:", initial), self._save_to)

    def _save_to(self, text: str | None) -> None:
        if not text:
            return
        path = Path(text).expanduser()
        # The document as it is now: editing goes on while the worker writes.
        document = copy.deepcopy(self.document)
        if not path.exists():
            self._write(path, document)
            return

        def confirmed(overwrite: bool | None) -> None:
            if overwrite:
                self._write(path, document)

        self.app.push_screen(
            ConfirmScreen(f"{path} exists. Overwrite it?", yes="Overwrite"), confirmed
        )

    @work(thread=True, group="builder-save", exit_on_error=False)
    def _write(self, path: Path, document: dict[str, Any]) -> None:
        try:
            write_pipeline(path, document)
        except OSError as exc:
            self._on_ui(
                self.notify, f"{path}: cannot be written ({exc.strerror})", severity="error"
            )
            return
        self._on_ui(self._saved, path, document)

    def _saved(self, path: Path, document: dict[str, Any]) -> None:
        self.path = path
        self._keep(document)
        _, error = self.validate()
        if error is not None:
            self.notify(f"Saved {path}, but it does not validate yet: {error}", severity="warning")
        else:
            self.notify(f"Saved {path}")

    def action_save_preset(self) -> None:
        pipeline, error = self.validate()
        if pipeline is None:
            assert error is not None
            self._blocked(error, "Saving the preset")
            return
        self._write_preset(pipeline.name, copy.deepcopy(self.document))

    @work(thread=True, group="builder-save", exit_on_error=False)
    def _write_preset(self, name: str, document: dict[str, Any]) -> None:
        try:
            version = self.presets.save(name, document)
        except OSError as exc:
            self._on_ui(
                self.notify, f"The preset cannot be written ({exc.strerror})", severity="error"
            )
            return
        self._on_ui(self._keep, document)
        self._on_ui(self.notify, f"Saved preset {version.name} v{version.number} ({version.path})")

    def action_load_preset(self) -> None:
        self._pick_preset()

    @work(thread=True, exclusive=True, group="builder-presets", exit_on_error=False)
    def _pick_preset(self) -> None:
        options = [(str(v.path), v.label) for v in self.presets.versions()]
        if not options:
            self._on_ui(self.notify, "No presets yet: press P to save one", severity="warning")
            return

        def chosen(path: str | None) -> None:
            if path:
                self._load_file(Path(path), keep_path=False)

        self._on_ui(self.app.push_screen, PickScreen("Load which preset?", options), chosen)
