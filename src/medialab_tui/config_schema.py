"""The keys of `config.toml`, each with its type and range, checked like a pipeline key.

Strict and closed: a value of the wrong type, out of range or under an unknown key is
an error naming the file, the key and the value (`config.toml: key 'threads' must be
at least 0 (got -3)`). Every key is optional; what is left out keeps `Config`'s
default. Imported only when a config file is read: pydantic takes a moment to
import, and `medialab --help` should not wait for it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

Text = Annotated[str, Field(min_length=1, max_length=4096)]


def _absolute(text: str) -> str:
    if not Path(text).expanduser().is_absolute():
        raise ValueError(f"must be an absolute path of a model (got {text!r})")
    return text


def _absolute_path(text: str) -> str:
    if not Path(text).expanduser().is_absolute():
        raise ValueError(f"must be an absolute path (got {text!r})")
    return text


AbsolutePath = Annotated[Text, AfterValidator(_absolute_path)]


def _device_name(text: str) -> str:
    if not re.fullmatch(r"cpu|mps|cuda(:\d{1,3})?", text):
        raise ValueError(f"must name a device: cpu, mps, cuda or cuda:N (got {text!r})")
    return text


def _scheduler_address(text: str) -> str:
    if not re.fullmatch(r"(tcp|tls)://[A-Za-z0-9.\-\[\]:]+:\d{1,5}", text):
        raise ValueError(f"must be a Dask scheduler address such as tcp://head:8786 (got {text!r})")
    return text


def _devices(value: str | list[str]) -> str | list[str]:
    if isinstance(value, str):
        if value != "auto":
            raise ValueError(f'must be "auto" or a list of devices (got {value!r})')
        return value
    if not 1 <= len(value) <= 64:
        raise ValueError(f"must list 1 to 64 devices (got {len(value)})")
    for name in value:
        _device_name(name)
    return value


Devices = Annotated[str | list[str], AfterValidator(_devices)]
SchedulerAddress = Annotated[str, Field(max_length=512), AfterValidator(_scheduler_address)]


# Pixel caps: from 1 px up to 2^32 (65536 × 65536), beyond anything PNG tools write.
Pixels = Annotated[int, Field(ge=1, le=2**32)]


class ConfigFile(BaseModel):
    """`config.toml` as written: every key optional (None: `Config`'s default)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    device: Literal["auto", "cuda", "mps", "cpu"] | None = None
    # One worker process per device: "auto" is every visible GPU (one worker on CPU/MPS).
    devices: Devices | None = None
    # A Dask scheduler: jobs run on its workers instead of this host's devices.
    cluster: SchedulerAddress | None = None
    dtype: Literal["auto", "float16", "bfloat16", "float32"] | None = None
    model_roots: list[Text] | None = None
    comfyui_model_paths: list[AbsolutePath] | None = None
    a1111_roots: list[AbsolutePath] | None = None
    cache_budget_gb: Annotated[float, Field(ge=0, le=100_000)] | None = None
    price_per_gpu_hour: Annotated[float, Field(ge=0, le=1_000_000)] | None = None
    max_attempts: Annotated[int, Field(ge=1, le=100)] | None = None
    threads: Annotated[int, Field(ge=0, le=1024)] | None = None
    keys: dict[str, Annotated[str, Field(max_length=64)]] | None = None
    theme: Annotated[str, Field(max_length=64)] | None = None
    graphics: Literal["auto", "kitty", "sixel", "halfcell"] | None = None
    allow_outside_links: bool | None = None
    allow_pickle: list[Annotated[Text, AfterValidator(_absolute)]] | None = None
    max_input_pixels: Pixels | None = None
    max_output_pixels: Pixels | None = None
    max_video_frames: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    keep_alive: Annotated[float, Field(ge=0, le=30 * 24 * 3600)] | None = None
    bell: bool | None = None

    def settings(self) -> dict[str, Any]:
        """The keys that were given, as `Config` takes them (paths expanded)."""
        given = self.model_dump(exclude_none=True)
        if isinstance(given.get("devices"), list):
            given["devices"] = tuple(given["devices"])
        for key in ("model_roots", "comfyui_model_paths", "a1111_roots", "allow_pickle"):
            if key in given:
                given[key] = tuple(Path(p).expanduser() for p in given[key])
        return given
