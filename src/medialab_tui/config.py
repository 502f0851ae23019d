"""Where medialab keeps its data, and the operator's `config.toml`.

The data directory holds everything: the database, the engine lock, models,
artifacts, logs and wildcards. It is owner-only because prompts and images are
the operator's own work: medialab's processes run with a umask of 077 (see
`keep_private`), and a data directory found open to others is tightened.
"""

from __future__ import annotations

import getpass
import os
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from medialab_tui.errors import InputError

ENV_HOME = "MEDIALAB_HOME"
DEVICES = ("auto", "cuda", "mps", "cpu")
DTYPES = ("auto", "float16", "bfloat16", "float32")
PRIVATE_UMASK = 0o077

# The umask the user had before `keep_private`; files exported outside the data
# directory are given the mode it would have given them.
_user_umask: int | None = None


def keep_private() -> None:
    """Make everything this process (and the processes it starts) creates owner-only.

    Called once at the start of every medialab process: all it writes goes into the
    data directory (database, WAL, logs, input copies, artifacts, previews, backups,
    and the demo models in `<data>/models`).
    """
    global _user_umask
    previous = os.umask(PRIVATE_UMASK)
    if _user_umask is None:
        _user_umask = previous


def user_umask() -> int:
    """The user's own umask, for files exported outside the data directory."""
    if _user_umask is not None:
        return _user_umask
    current = os.umask(PRIVATE_UMASK)  # the only portable way to read it
    os.umask(current)
    return current


def current_user() -> str:
    """The Unix user recorded on every event."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers): fall back to the uid
        return f"uid{os.getuid()}"


def default_data_dir() -> Path:
    """`$MEDIALAB_HOME`, else the XDG data directory (`~/.local/share/medialab`)."""
    env = os.environ.get(ENV_HOME)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share"
    return base / "medialab"


@dataclass(frozen=True)
class DataDir:
    """The layout of one data directory (SPEC §2, §7)."""

    root: Path

    @property
    def db_path(self) -> Path:
        return self.root / "medialab.db"

    @property
    def lock_path(self) -> Path:
        return self.root / "engine.lock"

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def artifacts(self) -> Path:
        return self.root / "artifacts"

    @property
    def inputs(self) -> Path:
        return self.root / "inputs"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def wildcards(self) -> Path:
        return self.root / "wildcards"

    @property
    def config_path(self) -> Path:
        return self.root / "config.toml"

    @property
    def backups(self) -> Path:
        return self.root / "backups"

    def ensure(self) -> DataDir:
        """Create the directory tree (owner-only) if it is missing.

        A data directory that exists with group or other permissions is made 0700,
        with a one-line notice on stderr.
        """
        old = os.umask(PRIVATE_UMASK)
        try:
            if self.root.is_dir():
                self._tighten()
            self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
            for sub in (self.models, self.artifacts, self.inputs, self.logs, self.wildcards):
                sub.mkdir(exist_ok=True, mode=0o700)
        finally:
            os.umask(old)
        return self

    def _tighten(self) -> None:
        mode = self.root.stat().st_mode & 0o777
        if not mode & 0o077:
            return
        try:
            self.root.chmod(0o700)
        except OSError:  # not ours: say so, and carry on
            print(
                f"medialab: {self.root} is open to other users ({mode:04o}) "
                "and could not be made owner-only.",
                file=sys.stderr,
            )
            return
        print(
            f"medialab: {self.root} was open to other users ({mode:04o}); "
            "it is now owner-only (0700).",
            file=sys.stderr,
        )


@dataclass(frozen=True)
class Config:
    """Settings from `<data>/config.toml`; every key is optional."""

    device: str = "auto"
    dtype: str = "auto"
    model_roots: tuple[Path, ...] = ()
    cache_budget_gb: float = 0.0  # 0: pick from the device's memory
    price_per_gpu_hour: float = 0.0
    max_attempts: int = 3
    threads: int = 0  # 0: torch's default
    keys: dict[str, str] = field(default_factory=dict)
    theme: str = ""
    graphics: str = "auto"
    # Links in a model root that point outside every root are skipped unless allowed.
    allow_outside_links: bool = False
    # Exact paths of pickle models (files or folders) the operator lets load.
    allow_pickle: tuple[Path, ...] = ()


_KEYS: dict[str, type | tuple[type, ...]] = {
    "device": str,
    "dtype": str,
    "model_roots": list,
    "cache_budget_gb": (int, float),
    "price_per_gpu_hour": (int, float),
    "max_attempts": int,
    "threads": int,
    "keys": dict,
    "theme": str,
    "graphics": str,
    "allow_outside_links": bool,
    "allow_pickle": list,
}


def load_config(data: DataDir) -> Config:
    """Read `config.toml`; a bad file is an `InputError` naming the key."""
    path = data.config_path
    if not path.exists():
        return Config()
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path}: {exc}") from None
    for key, value in raw.items():
        expected = _KEYS.get(key)
        if expected is None:
            raise InputError(f"{path}: unknown key '{key}'")
        if not isinstance(value, expected) or (isinstance(value, bool) and expected is not bool):
            raise InputError(f"{path}: key '{key}' has the wrong type ({value!r})")
    if raw.get("device", "auto") not in DEVICES:
        raise InputError(f"{path}: key 'device' must be one of {', '.join(DEVICES)}")
    if raw.get("dtype", "auto") not in DTYPES:
        raise InputError(f"{path}: key 'dtype' must be one of {', '.join(DTYPES)}")
    if raw.get("max_attempts", 3) < 1:
        raise InputError(f"{path}: key 'max_attempts' must be at least 1")
    roots = tuple(Path(str(p)).expanduser() for p in raw.get("model_roots", []))
    allowed = raw.get("allow_pickle", [])
    if not all(isinstance(p, str) and Path(p).expanduser().is_absolute() for p in allowed):
        raise InputError(f"{path}: key 'allow_pickle' must list absolute paths of models")
    return Config(
        device=raw.get("device", "auto"),
        dtype=raw.get("dtype", "auto"),
        model_roots=roots,
        cache_budget_gb=float(raw.get("cache_budget_gb", 0.0)),
        price_per_gpu_hour=float(raw.get("price_per_gpu_hour", 0.0)),
        max_attempts=int(raw.get("max_attempts", 3)),
        threads=int(raw.get("threads", 0)),
        keys={str(k): str(v) for k, v in raw.get("keys", {}).items()},
        theme=str(raw.get("theme", "")),
        graphics=str(raw.get("graphics", "auto")),
        allow_outside_links=bool(raw.get("allow_outside_links", False)),
        allow_pickle=tuple(Path(p).expanduser() for p in allowed),
    )
