"""The builder's parts: the stage form generated from a stage's parameter model,
the seeds syntax, where a validation message belongs, and two small modals.

The form reads `STAGES[type].params.model_fields`, the same pydantic models the
CLI validates pipeline files with, so a range or a default is written once.
"""

from __future__ import annotations

import re
import tomllib
import types
from dataclasses import dataclass
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.suggester import SuggestFromList
from textual.widget import Widget
from textual.widgets import Checkbox, Input, Label, OptionList, Select, Static
from textual.widgets.option_list import Option

from medialab_tui.engine.stages import STAGES
from medialab_tui.errors import InputError
from medialab_tui.text import visible, visible_lines

# list: comma-separated values; refs: `name:weight, name` (LoRAs); table: an inline
# TOML table as in a pipeline file, e.g. {model = "x", image = "edges.png"}.
FieldKind = Literal["int", "float", "str", "choice", "bool", "list", "refs", "table"]

SEEDS_HINT = "1, 2, 3  or  seed 7 count 4  (empty: one random seed)"


_EXAMPLES = {
    "list": "a, b, c",
    "refs": "name:0.8, other-name",
    "table": '{model = "name", image = "edges.png"}',
}


@dataclass(frozen=True)
class FieldSpec:
    """One stage parameter as the form shows it."""

    name: str
    kind: FieldKind
    default: Any
    required: bool
    description: str
    choices: tuple[str, ...] = ()
    bounds: str = ""


def _bounds(info: FieldInfo) -> str:
    """`8–4096, ×8` or `>1.0, ≤8.0` from the field's constraints."""
    rules: dict[str, Any] = {}
    for rule in info.metadata:
        for name in ("ge", "gt", "le", "multiple_of"):
            if getattr(rule, name, None) is not None:
                rules[name] = getattr(rule, name)
    parts = []
    if "ge" in rules and "le" in rules:
        parts.append(f"{rules['ge']}–{rules['le']}")
    else:
        parts += [
            f"{sign}{rules[k]}" for k, sign in (("ge", "≥"), ("gt", ">"), ("le", "≤")) if k in rules
        ]
    if "multiple_of" in rules:
        parts.append(f"×{rules['multiple_of']}")
    return ", ".join(parts)


def _kind(annotation: Any) -> tuple[FieldKind, tuple[str, ...]]:
    """Map a field's annotation to the widget that edits it."""
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):  # `str | None`: the None means "not set"
        annotation = next(a for a in get_args(annotation) if a is not type(None))
        origin = get_origin(annotation)
    if origin is Literal:
        return "choice", tuple(str(a) for a in get_args(annotation))
    if origin is list:
        (item,) = get_args(annotation)
        if isinstance(item, type) and issubclass(item, BaseModel):
            return "refs", ()
        return "list", tuple(str(a) for a in get_args(item)) if get_origin(item) is Literal else ()
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "table", ()
    if annotation is bool:
        return "bool", ()
    if annotation is int:
        return "int", ()
    if annotation is float:
        return "float", ()
    return "str", ()


def stage_fields(stage_type: str) -> list[FieldSpec]:
    """The editable parameters of a stage type, in declaration order (`type` and
    `sweep` excluded)."""
    fields = []
    for name, info in STAGES[stage_type].params.model_fields.items():
        if name in ("type", "sweep"):  # a sweep is written in the pipeline file
            continue
        kind, choices = _kind(info.annotation)
        fields.append(
            FieldSpec(
                name=name,
                kind=kind,
                default=None if info.is_required() else info.get_default(call_default_factory=True),
                required=info.is_required(),
                description=info.description or "",
                choices=choices,
                bounds=_bounds(info),
            )
        )
    # The stage's own values first, then the LoRA/ControlNet tables, then the
    # booleans: they are switches, not values, and read best under the numbers.
    return sorted(fields, key=lambda f: (f.kind == "bool", f.kind in ("refs", "table")))


def stage_values(stage: dict[str, Any]) -> dict[str, Any]:
    """A stage's values with every default filled in: a key left out and a key set to
    its default are the same value, as they are to the stage that runs it."""
    stage_type = str(stage.get("type"))
    fields = stage_fields(stage_type) if stage_type in STAGES else []
    return {**{f.name: f.default for f in fields}, **stage}


def pipeline_state(document: dict[str, Any]) -> dict[str, Any]:
    """What a pipeline document would run, defaults filled in: two documents that run
    alike compare equal, however their widgets wrote them."""
    inputs = document.get("inputs") or {}
    return {
        "name": document.get("name", ""),
        "mode": document.get("mode", "auto"),
        "expand": document.get("expand", "product"),
        "inputs": {k: v for k, v in inputs.items() if v is not None and v != "" and v != []},
        "stages": [stage_values(stage) for stage in document.get("stages", [])],
    }


def form_value(spec: FieldSpec, text: str) -> Any:
    """Text typed into a field as the value the pipeline holds; `None` drops the key.

    Text that is not a number is passed on as it is, so the stage model reports
    the same sentence a pipeline file with that value would get.
    """
    text = text.strip()
    if not text:
        return None
    if spec.kind == "list":
        words = [w.strip() for w in text.split(",") if w.strip()]
        return [_number(w) if not spec.choices else w for w in words]
    if spec.kind == "refs":
        refs: list[dict[str, Any]] = []
        for word in (w.strip() for w in text.split(",")):
            if word:
                name, _, weight = word.rpartition(":") if ":" in word else (word, "", "")
                refs.append(
                    {"model": name.strip(), **({"weight": _number(weight)} if weight else {})}
                )
        return refs
    if spec.kind == "table":
        try:
            return tomllib.loads(f"value = {text}")["value"]
        except tomllib.TOMLDecodeError:
            return text  # the stage model says "must be a table"
    try:
        if spec.kind == "int":
            return int(text)
        if spec.kind == "float":
            return float(text)
    except ValueError:
        return text
    return text


def _number(text: str) -> Any:
    try:
        return float(text.strip())
    except ValueError:
        return text.strip()


def format_value(spec: FieldSpec, value: Any) -> str:
    """A value as the form shows it: the inverse of `form_value`."""
    if value is None:
        return ""
    if spec.kind == "list":
        return ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
    if spec.kind == "refs":
        return ", ".join(
            f"{r['model']}:{r['weight']:g}" if "weight" in r else str(r["model"]) for r in value
        )
    if spec.kind == "table" and isinstance(value, dict):
        return _inline_table(value)
    return str(value)


def _inline_table(value: dict[str, Any]) -> str:
    import json

    parts = [f"{k} = {json.dumps(v)}" for k, v in value.items()]
    return "{" + ", ".join(parts) + "}"


def parse_seeds(text: str) -> dict[str, int | list[int]]:
    """`1, 2, 3` → seeds; `seed 7 count 4` → seed and count; empty → a random seed."""
    words = text.replace(",", " ").split()
    if not words:
        return {}
    if all(w.lstrip("-").isdigit() for w in words):
        return {"seeds": [int(w) for w in words]}
    out: dict[str, int | list[int]] = {}
    pairs = list(zip(words[::2], words[1::2], strict=False))
    if len(words) % 2 == 0:
        for key, value in pairs:
            if key.lower() not in ("seed", "count") or key.lower() in out:
                break
            if not value.lstrip("-").isdigit():
                break
            out[key.lower()] = int(value)
        else:
            return out
    raise InputError("write seeds as '1, 2, 3' or as 'seed 7 count 4'")


def format_seeds(inputs: dict[str, Any]) -> str:
    """The inverse of `parse_seeds` for a pipeline's `[inputs]`."""
    if inputs.get("seeds") is not None:
        return ", ".join(str(s) for s in inputs["seeds"])
    words = [f"{key} {inputs[key]}" for key in ("seed", "count") if inputs.get(key) is not None]
    return " ".join(words)


@dataclass(frozen=True)
class ErrorSpot:
    """Where a validation message belongs: a stage (1-based) and/or a key."""

    stage: int | None
    key: str | None
    text: str


def error_spot(error: InputError) -> ErrorSpot:
    """Where an input error belongs in the form, from its location, and the words for
    under the field."""
    loc, text = error.loc, error.text
    if loc.key is None:
        return ErrorSpot(loc.stage, None, text)
    key = loc.key
    if loc.stage is not None and "." in key:
        # `loras[0].model` belongs under the `loras` field, naming the part.
        field, _, part = key.partition(".")
        joined = f"{part} {text}" if error.predicate else f"{part}: {text}"
        return ErrorSpot(loc.stage, re.sub(r"\[\d+\]", "", field), joined)
    return ErrorSpot(loc.stage, re.sub(r"\[\d+\]", "", key), text)


class StageForm(Vertical):
    """A stage's parameters, one row each, with its error under the field."""

    DEFAULT_CSS = """
    StageForm { height: auto; }
    StageForm .form-row { height: 1; }
    StageForm .form-label { width: 12; }
    StageForm .form-row Input, StageForm .form-row Select { width: 1fr; }
    StageForm .form-help { color: $text-muted; padding-left: 12; height: auto; }
    StageForm .form-error { color: $error; padding-left: 12; height: auto; }
    StageForm .form-error.-empty { display: none; }
    StageForm Checkbox { margin-top: 1; }
    """

    class Changed(Message):
        """The stage's values after an edit (keys left empty are absent)."""

        def __init__(self, form: StageForm, values: dict[str, Any]) -> None:
            super().__init__()
            self.form = form
            self.values = values

    def __init__(
        self, index: int, values: dict[str, Any], suggestions: dict[str, list[str]]
    ) -> None:
        super().__init__()
        self.index = index
        self.stage_type = str(values["type"])
        self.values = dict(values)
        self.fields = {f.name: f for f in stage_fields(self.stage_type)}
        self.suggestions = suggestions
        self._errors: dict[str, str] = {}

    def compose(self) -> ComposeResult:
        yield Static("", id="form-stage-error", classes="form-error -empty")
        for spec in self.fields.values():
            value = self.values.get(spec.name)
            widget_id = f"field-{spec.name}"
            if spec.kind == "bool":
                yield Checkbox(
                    spec.description or spec.name,
                    value=bool(value if value is not None else spec.default),
                    id=widget_id,
                    compact=True,
                    tooltip=f"{spec.name}: {spec.description}",
                )
            else:
                with Horizontal(classes="form-row"):
                    yield Label(spec.name, classes="form-label")
                    yield self._editor(spec, value, widget_id)
                choices = f"any of: {', '.join(spec.choices)}" if spec.kind == "list" else ""
                help_text = " · ".join(p for p in (spec.description, spec.bounds, choices) if p)
                yield Static(help_text, classes="form-help")
            yield Static("", id=f"error-{spec.name}", classes="form-error -empty")

    def _editor(self, spec: FieldSpec, value: Any, widget_id: str) -> Widget:
        tooltip = f"{spec.name}: {spec.description}"
        if spec.kind == "choice":
            chosen = value if value in spec.choices else spec.default
            return Select(
                [(c, c) for c in spec.choices],
                value=chosen,
                allow_blank=False,
                id=widget_id,
                compact=True,
                tooltip=tooltip,
            )
        names = self.suggestions.get(spec.name)
        if spec.required:
            placeholder = "required"
        elif spec.default is None:
            placeholder = "not set"
        else:
            placeholder = f"default {spec.default}"
        if spec.kind in _EXAMPLES and not spec.required:
            placeholder = _EXAMPLES[spec.kind]
        return Input(
            format_value(spec, value),
            placeholder=placeholder,
            id=widget_id,
            compact=True,
            tooltip=tooltip,
            suggester=SuggestFromList(names, case_sensitive=False) if names else None,
        )

    def _field_of(self, widget: Widget) -> FieldSpec | None:
        name = (widget.id or "").removeprefix("field-")
        return self.fields.get(name)

    def _update(self, spec: FieldSpec, value: Any) -> None:
        if value is None:
            self.values.pop(spec.name, None)
        else:
            self.values[spec.name] = value
        self.post_message(self.Changed(self, dict(self.values)))

    @on(Input.Changed)
    def _input_changed(self, event: Input.Changed) -> None:
        event.stop()
        spec = self._field_of(event.input)
        if spec is not None:
            self._update(spec, form_value(spec, event.value))

    @on(Select.Changed)
    def _select_changed(self, event: Select.Changed) -> None:
        event.stop()
        spec = self._field_of(event.select)
        if spec is not None and event.value is not Select.BLANK:
            self._update(spec, str(event.value))

    @on(Checkbox.Changed)
    def _checkbox_changed(self, event: Checkbox.Changed) -> None:
        event.stop()
        spec = self._field_of(event.checkbox)
        if spec is not None:
            self._update(spec, event.value)

    def set_value(self, name: str, value: Any) -> None:
        """Put a value into a field from outside (a model sent from the Models screen)."""
        widget = self.query_one(f"#field-{name}")
        if isinstance(widget, Input):
            widget.value = format_value(self.fields[name], value)
        elif isinstance(widget, Select):
            widget.value = value
        elif isinstance(widget, Checkbox):
            widget.value = bool(value)

    def show_errors(self, errors: dict[str, str], stage_error: str = "") -> None:
        """Show each message under its field; clear the rest."""
        self._errors = {**errors, "stage": stage_error}
        if self.is_mounted:
            self._paint_errors()

    def on_mount(self) -> None:
        # Errors may arrive between creating the form and composing its fields.
        self._paint_errors()

    def _paint_errors(self) -> None:
        for name in [*self.fields, "stage"]:
            text = self._errors.get(name, "")
            target = self.query_one("#form-stage-error" if name == "stage" else f"#error-{name}")
            assert isinstance(target, Static)
            target.update(Text(visible(text)))
            target.set_class(not text, "-empty")


class TextPrompt(ModalScreen[str | None]):
    """Ask for one line of text (a file path, a prompt): enter accepts, escape cancels."""

    DEFAULT_CSS = """
    TextPrompt { align: center middle; }
    TextPrompt > Vertical { width: 72; height: auto; border: round $accent;
                            background: $surface; padding: 1 2; }
    TextPrompt Input { margin-top: 1; }
    """
    BINDINGS = [Binding("escape", "cancel", "Cancel", id="prompt.cancel")]

    def __init__(
        self, question: str, initial: str = "", placeholder: str = "path/to/pipeline.toml"
    ) -> None:
        super().__init__()
        self.question = question
        self.initial = initial
        self.placeholder = placeholder

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(visible_lines(self.question), markup=False)
            # Open with the cursor after the text and nothing selected: a key typed
            # adds to the prompt or path instead of replacing all of it.
            yield Input(
                self.initial, placeholder=self.placeholder, id="path", select_on_focus=False
            )
            yield Static("[dim]enter accept · esc cancel[/]")

    def on_mount(self) -> None:
        self.query_one(Input).action_end()

    @on(Input.Submitted)
    def _accept(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip() or None)

    def action_cancel(self) -> None:
        self.dismiss(None)


class PickScreen(ModalScreen[str | None]):
    """Pick one of a list (a stage type, a preset version): enter picks, escape cancels."""

    DEFAULT_CSS = """
    PickScreen { align: center middle; }
    PickScreen > Vertical { width: 72; height: auto; max-height: 80%; border: round $accent;
                            background: $surface; padding: 1 2; }
    PickScreen OptionList { height: auto; max-height: 20; margin-top: 1; }
    """
    BINDINGS = [Binding("escape", "cancel", "Cancel", id="pick.cancel")]

    def __init__(self, question: str, options: list[tuple[str, str]]) -> None:
        super().__init__()
        self.question = question
        self.options = options

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self.question)
            yield OptionList(*[Option(label, id=key) for key, label in self.options])
            yield Static("[dim]enter pick · esc cancel[/]")

    @on(OptionList.OptionSelected)
    def _picked(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_cancel(self) -> None:
        self.dismiss(None)
