"""Where medialab keeps its data, and the operator's `config.toml`.

The data directory holds everything: the database, the engine lock, models,
artifacts, logs and wildcards. It is owner-only because prompts and images are
the operator's own work: medialab's processes run with a umask of 077 (see
`keep_private`), and a data directory found open to others is tightened.
"""

from __future__ import annotations

import errno
import getpass
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from medialab_tui.errors import ErrorLoc, InputError, describe_invalid, key_path

ENV_HOME = "MEDIALAB_HOME"
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


def open_data_dir(root: Path) -> DataDir:
    """The data directory at `root`, created if missing (`DataDir.ensure`) and checked
    to be writable. One that cannot be used (a file, another user's folder, a read-only
    file system) is an `InputError` saying so in one sentence."""
    try:
        if root.is_dir() and not os.access(root, os.W_OK | os.X_OK):
            read_only = os.statvfs(root).f_flag & os.ST_RDONLY
            code = errno.EROFS if read_only else errno.EACCES
            raise OSError(code, os.strerror(code), str(root))
        return DataDir(root).ensure()
    except OSError as exc:
        raise InputError(
            f"the data directory {root} cannot be used: {_why_unusable(root, exc)}; "
            f"choose another with --data-dir or ${ENV_HOME}"
        ) from None


def _why_unusable(root: Path, exc: OSError) -> str:
    where = Path(exc.filename) if exc.filename else root
    if exc.errno == errno.EEXIST:
        return f"{'it' if where == root else where} is a file, not a folder"
    if exc.errno == errno.ENOTDIR:
        return "a part of its path is a file, not a folder"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied" + (f" ({where})" if where != root else "")
    if exc.errno == errno.EROFS:
        return "it is on a read-only file system"
    if exc.errno == errno.ENOSPC:
        return "the disk is full"
    return (exc.strerror or exc.__class__.__name__).lower()


@dataclass(frozen=True)
class Config:
    """Settings from `<data>/config.toml`; every key is optional (the schema with the
    ranges is `config_schema.ConfigFile`)."""

    device: str = "auto"
    # One worker per device (`engine.scheduler`): "auto" is every visible GPU, else the
    # listed devices, e.g. ("cuda:0", "cuda:1"); ("cpu", "cpu") runs two CPU workers.
    devices: str | tuple[str, ...] = "auto"
    # A Dask scheduler address (`engine.cluster`): "" runs jobs on this host's devices.
    cluster: str = ""
    dtype: str = "auto"
    model_roots: tuple[Path, ...] = ()
    # Shared folders read in place (`engine.roots`): ComfyUI `extra_model_paths.yaml`
    # files, and A1111/Forge installs whose `models/` layout is read.
    comfyui_model_paths: tuple[Path, ...] = ()
    a1111_roots: tuple[Path, ...] = ()
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
    # Caps checked at submit, so an oversized job never starts: the pixels of an input
    # image (100 Mpx: more than an 8K or a 100-megapixel camera's photo), of any
    # output (16384 × 16384: a 4096 × 4096 image upscaled ×4), and a video's frames.
    max_input_pixels: int = 100_000_000
    max_output_pixels: int = 16384 * 16384
    max_video_frames: int = 10_000
    # Seconds the engine host stays up with an empty queue and no TUI attached, so a
    # model stays loaded between scripted runs; 0 leaves as soon as it is idle.
    keep_alive: float = 600.0
    # The terminal bell rings when a run waits in review, fails or completes.
    bell: bool = True

    @property
    def max_image_pixels(self) -> int:
        """The largest image medialab itself opens: an input or an output."""
        return max(self.max_input_pixels, self.max_output_pixels)


def load_config(data: DataDir) -> Config:
    """Read `config.toml`; a bad file is an `InputError` naming the file, key and value."""
    path = data.config_path
    if not path.exists():
        return Config()
    from pydantic import ValidationError

    from medialab_tui.config_schema import ConfigFile
    from medialab_tui.tomlfile import read_toml

    raw = read_toml(path)
    try:
        given = ConfigFile.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ErrorLoc(file=str(path), key=key_path(tuple(err.get("loc", ()))) or None)
        raise InputError(describe_invalid(err), loc=where) from None
    return Config(**given.settings())


def allow_image_pixels(config: Config) -> None:
    """Let PIL open images as large as the caps allow. Its guard against decompression
    bombs (a tiny file that claims gigapixels) warns above this and refuses twice it."""
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = config.max_image_pixels
