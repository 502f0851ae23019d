"""The worker template: a process that has imported what a worker needs (torch,
diffusers, transformers) and forks a ready worker when a host asks for one.

A worker started fresh spends seconds importing its libraries before it can load a
model; one forked from the template is ready in a fraction of a second. A host pays
that on its first worker, after every crash, stall or ignored cancel, and a box that
runs many hosts (one per data directory) pays it per host.

The template never touches CUDA (a CUDA context does not survive a fork): it asks
torch about GPUs through NVML only, and it forks workers for the CPU alone. A host
whose worker computes on a GPU, or on Apple's `mps`, starts it fresh as before
(`wanted_for`). Everything the imports read is part of the template's key: the
interpreter, medialab's source files, the user and the environment (but the variables
that differ between hosts, `PER_HOST_ENV`); a change of any of them makes a new
template. One template per key runs per user, in an owner-only folder
(`$XDG_RUNTIME_DIR/medialab`, else `<tmp>/medialab-<uid>`; environment variable
`MEDIALAB_WORKER_TEMPLATE`: another folder, or `off`).

The protocol, over the template's Unix socket (only the owner's processes get an
answer):
- host → template: one JSON line `{argv, env, cwd, umask}` carrying three file
  descriptors (the worker's stdin, stdout and stderr);
- template → host: `{"pid": n}` with the worker's pidfd (kill it through that: no
  pid reuse race), or `{"refused": why}`; then `{"exit": code}` when the worker ends.

The template leaves when no worker of its own has run for `IDLE_S`, or on SIGTERM
(its workers go on; their hosts then learn of an exit without its code).
This module's top imports nothing heavy: the host side runs in the engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import os
import selectors
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

ENV_TEMPLATE = "MEDIALAB_WORKER_TEMPLATE"
# A template leaves this long after its last worker ended (or after it started).
IDLE_S = 120.0
# How long a host waits for the template's answer before starting the worker fresh.
ANSWER_TIMEOUT_S = 10.0
# Variables that differ between hosts but that no import reads: not in the key.
PER_HOST_ENV = frozenset(
    {"CUDA_VISIBLE_DEVICES", "PWD", "OLDPWD", "_", "SHLVL", "COLUMNS", "LINES"}
)
PER_HOST_PREFIXES = ("MEDIALAB_", "PYTEST_")
# Socket paths longer than this do not fit `sockaddr_un` on every system.
MAX_SOCKET_PATH = 100


def template_dir(env: Mapping[str, str] | None = None) -> Path | None:
    """Where this user's templates live, or None when templates are off."""
    env = os.environ if env is None else env
    given = env.get(ENV_TEMPLATE, "")
    if given.lower() in ("off", "0", "no", "false"):
        return None
    if given:
        return Path(given)
    runtime = env.get("XDG_RUNTIME_DIR", "")
    if runtime and Path(runtime).is_dir():
        return Path(runtime) / "medialab"
    return Path(tempfile.gettempdir()) / f"medialab-{os.getuid()}"


def _owner_only_dir(path: Path) -> bool:
    """Make `path` (0700) or check that it is this user's alone; False if it is not."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = path.lstat()
    except OSError:
        return False
    return (
        stat.S_ISDIR(st.st_mode)
        and st.st_uid == os.getuid()
        and stat.S_IMODE(st.st_mode) & 0o077 == 0
    )


_SOURCE_DIGEST: str | None = None


def _source_digest() -> str:
    """Names, sizes and times of medialab's source files: an edit makes a new key."""
    global _SOURCE_DIGEST
    if _SOURCE_DIGEST is None:
        root = Path(__file__).resolve().parents[2]
        h = hashlib.blake2b(digest_size=16)
        for path in sorted(root.rglob("*.py")):
            st = path.stat()
            h.update(f"{path.relative_to(root)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        _SOURCE_DIGEST = h.hexdigest()
    return _SOURCE_DIGEST


def template_env(env: Mapping[str, str]) -> dict[str, str]:
    """The environment a template imports under: the worker's, less the per-host part."""
    return {
        k: v
        for k, v in env.items()
        if k not in PER_HOST_ENV and not k.startswith(PER_HOST_PREFIXES)
    }


def template_key(env: Mapping[str, str]) -> str:
    h = hashlib.blake2b(digest_size=8)
    parts = [sys.executable, str(os.getuid()), _source_digest()]
    parts += [f"{k}={v}" for k, v in sorted(template_env(env).items())]
    h.update("\0".join(parts).encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def wanted_for(device: str, label: str) -> bool:
    """Whether the worker of a slot may come from the template: CPU work only (a pool
    labels a slot `cpu:<n>` when this host has no GPU, `engine.pool`)."""
    return device == "cpu" or (device == "auto" and label.startswith("cpu:"))


# --- the host's side ---------------------------------------------------------------


class TemplateChild:
    """A worker the template forked, as the engine uses an asyncio subprocess:
    `pid`, `returncode`, `stdin`, `stdout`, `kill()` and `wait()`."""

    def __init__(
        self,
        pid: int,
        pidfd: int,
        conn: socket.socket,
        stdin: asyncio.StreamWriter,
        stdout: asyncio.StreamReader,
    ) -> None:
        self.pid = pid
        self.stdin = stdin
        self.stdout = stdout
        self.returncode: int | None = None
        self._pidfd = pidfd
        self._conn = conn
        self._ended = asyncio.get_running_loop().create_future()
        self._watch = asyncio.create_task(self._watch_exit(), name="template-worker-exit")

    async def _watch_exit(self) -> None:
        loop = asyncio.get_running_loop()
        code: int | None = None
        buf = b""
        try:
            while b"\n" not in buf:
                chunk = await loop.sock_recv(self._conn, 4096)
                if not chunk:
                    break
                buf += chunk
            if b"\n" in buf:
                code = json.loads(buf.split(b"\n", 1)[0]).get("exit")
        except (OSError, ValueError):
            pass
        if code is None:
            # The template went away first: wait for the worker itself (its pidfd turns
            # readable when it ends); its exit code is lost with the template.
            ended = asyncio.Event()
            loop.add_reader(self._pidfd, ended.set)
            try:
                await ended.wait()
            finally:
                loop.remove_reader(self._pidfd)
            code = 255
        self.returncode = int(code)
        self.stdin.close()
        self._conn.close()
        os.close(self._pidfd)
        self._pidfd = -1
        if not self._ended.done():
            self._ended.set_result(self.returncode)

    def kill(self) -> None:
        if self.returncode is not None or self._pidfd < 0:
            raise ProcessLookupError(self.pid)
        signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)

    async def wait(self) -> int:
        return await asyncio.shield(self._ended)


def _send_request(
    path: Path, request: bytes, fds: Sequence[int]
) -> tuple[socket.socket, dict[str, Any], int]:
    """Ask the template at `path` for a worker (blocking: run it off the event loop)."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.settimeout(ANSWER_TIMEOUT_S)
        conn.connect(str(path))
        socket.send_fds(conn, [request], list(fds))
        data, got, _flags, _addr = socket.recv_fds(conn, 65536, 1)
        while data and not data.endswith(b"\n"):
            more = conn.recv(65536)
            if not more:
                break
            data += more
        answer = json.loads(data) if data else {"refused": "the template closed the connection"}
    except BaseException:
        conn.close()
        raise
    pidfd = got[0] if got else -1
    for extra in got[1:]:
        os.close(extra)
    return conn, answer, pidfd


def _start_template(directory: Path, key: str, env: Mapping[str, str]) -> None:
    """Start the template for `key` in the background (it takes its own lock: a second
    one started meanwhile leaves at once)."""
    log_fd = os.open(directory / f"{key}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "medialab_tui.engine.worker.template", str(directory), key],
            stdin=subprocess.DEVNULL,
            stdout=log_fd,
            stderr=log_fd,
            cwd=directory,
            env=template_env(env),
            start_new_session=True,
        )
    finally:
        os.close(log_fd)
    threading.Thread(target=proc.wait, name="worker-template-reaper", daemon=True).start()


def _template_running(directory: Path, key: str) -> bool:
    """Someone holds the key's lock: the template is importing or serving."""
    try:
        fd = os.open(directory / f"{key}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


async def fork_worker(
    argv: Sequence[str], env: Mapping[str, str], stderr_fd: int, limit: int
) -> TemplateChild | None:
    """A worker forked by this user's template, or None: then start it fresh.

    When no template answers, this starts one for the workers to come.
    """
    directory = template_dir(env)
    if directory is None or not await asyncio.to_thread(_owner_only_dir, directory):
        return None
    key = template_key(env)
    path = directory / f"{key}.sock"
    if len(str(path)) > MAX_SOCKET_PATH:
        return None
    request = (
        json.dumps(
            {"argv": list(argv), "env": dict(env), "cwd": os.getcwd(), "umask": _umask()}
        ).encode()
        + b"\n"
    )
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    try:
        conn, answer, pidfd = await asyncio.to_thread(
            _send_request, path, request, (in_r, out_w, stderr_fd)
        )
    except (OSError, ValueError):
        conn, answer, pidfd = None, {}, -1
    finally:
        # The worker has its own copies now (or there is no worker).
        os.close(in_r)
        os.close(out_w)
    if conn is None or "pid" not in answer or pidfd < 0:
        os.close(in_w)
        os.close(out_r)
        if pidfd >= 0:
            os.close(pidfd)
        if conn is not None:
            conn.close()
        elif not await asyncio.to_thread(_template_running, directory, key):
            await asyncio.to_thread(_start_template, directory, key, env)
        return None
    os.set_inheritable(pidfd, False)
    conn.setblocking(False)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=limit, loop=loop)
    await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader, loop=loop), os.fdopen(out_r, "rb", 0)
    )
    transport, protocol = await loop.connect_write_pipe(
        asyncio.streams.FlowControlMixin, os.fdopen(in_w, "wb", 0)
    )
    writer = asyncio.StreamWriter(transport, protocol, None, loop)
    return TemplateChild(int(answer["pid"]), pidfd, conn, writer, reader)


def _umask() -> int:
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def stop_templates(directory: Path) -> None:
    """End every template in `directory` (tests; the templates would leave on their own)."""
    pids = []
    for pid_file in directory.glob("*.pid"):
        try:
            pid = int(pid_file.read_text())
            os.kill(pid, signal.SIGTERM)
            pids.append(pid)
        except (OSError, ValueError):
            continue
    deadline = time.monotonic() + 20
    for pid in pids:
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie has ended
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


# --- the template's side -----------------------------------------------------------


class _Template:
    def __init__(self, directory: Path, key: str, idle_s: float) -> None:
        self.directory = directory
        self.key = key
        self.idle_s = idle_s
        self.selector = selectors.DefaultSelector()
        self.children: dict[int, socket.socket | None] = {}
        self.last_active = time.monotonic()
        self.gpu = False
        self.stopping = False
        self.own_fds: list[int] = []

    def log(self, text: str) -> None:
        print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {text}", file=sys.stderr, flush=True)

    def prepare(self) -> None:
        """Import what every worker imports, without touching CUDA."""
        nvml = "PYTORCH_NVML_BASED_CUDA_CHECK"
        had = os.environ.get(nvml)
        os.environ[nvml] = "1"
        import torch

        import medialab_tui.engine.worker.loading  # noqa: F401  (diffusers, transformers)
        import medialab_tui.engine.worker.main  # noqa: F401
        from medialab_tui.engine.families import FAMILIES
        from medialab_tui.engine.stages import STAGES

        # Each stage's and family's worker side too: a forked worker finds them loaded.
        parts = [*(s.runner for s in STAGES.values()), *(f.loader for f in FAMILIES.values())]
        for part in parts:
            with contextlib.suppress(ImportError):  # a family that loads as another does
                part()

        gpu = torch.cuda.is_available() or bool(
            getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
        )
        self.gpu = gpu or torch.cuda.is_initialized()
        if had is None:
            os.environ.pop(nvml)
        if threading.active_count() > 1:
            self.log(f"threads after the imports: {threading.enumerate()}")

    def serve(self) -> int:
        lock_fd = os.open(self.directory / f"{self.key}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return 0  # another template of this key is starting or serving
        self.own_fds.append(lock_fd)
        started = time.monotonic()
        self.prepare()
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        self.own_fds += [wake_r, wake_w]
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.own_fds.append(listener.fileno())
        path = self.directory / f"{self.key}.sock"
        staging = self.directory / f"{self.key}.{os.getpid()}.sock"
        staging.unlink(missing_ok=True)
        listener.bind(str(staging))
        os.chmod(staging, 0o600)
        listener.listen(16)
        os.replace(staging, path)  # the socket answers only once the imports are done
        (self.directory / f"{self.key}.pid").write_text(str(os.getpid()))
        inode = path.stat().st_ino
        self.log(f"ready as pid {os.getpid()} in {time.monotonic() - started:.1f} s")
        self.selector.register(listener, selectors.EVENT_READ, "accept")
        self.selector.register(wake_r, selectors.EVENT_READ, "wake")
        self.last_active = time.monotonic()
        try:
            while not self.stopping:
                if not self.children and time.monotonic() - self.last_active > self.idle_s:
                    self.log("idle: leaving")
                    break
                for item, _ in self.selector.select(timeout=1.0):
                    if item.data == "accept":
                        self._accept(listener)
                    elif item.data == "wake":
                        with contextlib.suppress(BlockingIOError):
                            os.read(wake_r, 512)
                    else:
                        self._host_closed(item.fileobj)  # type: ignore[arg-type]
                self._reap()
        finally:
            with contextlib.suppress(OSError):
                if path.stat().st_ino == inode:
                    path.unlink()
                    (self.directory / f"{self.key}.pid").unlink(missing_ok=True)
        return 0

    def _stop(self, *_: Any) -> None:
        self.stopping = True

    def _accept(self, listener: socket.socket) -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        self.last_active = time.monotonic()
        fds: list[int] = []
        try:
            conn.settimeout(5.0)
            creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
            _pid, uid, _gid = struct.unpack("3i", creds)
            if uid != os.getuid():
                self.log(f"refused a request from uid {uid}")
                conn.close()
                return
            data, fds, _flags, _addr = socket.recv_fds(conn, 1 << 20, 3)
            while data and not data.endswith(b"\n"):
                more = conn.recv(1 << 20)
                if not more:
                    break
                data += more
            request = json.loads(data)
            if len(fds) != 3:
                raise ValueError(f"{len(fds)} file descriptors instead of 3")
            argv = [str(a) for a in request["argv"]]
            if self.gpu and argv[argv.index("--device") + 1 :][:1] != ["cpu"]:
                raise ValueError("this box has a GPU: only a `--device cpu` worker forks")
        except (OSError, ValueError) as exc:
            self.log(f"a bad request: {exc}")
            for fd in fds:
                os.close(fd)
            with contextlib.suppress(OSError):
                conn.sendall(json.dumps({"refused": str(exc)}).encode() + b"\n")
            conn.close()
            return
        pid = os.fork()
        if pid == 0:
            self._become_worker(request, fds, conn)  # never returns
        for fd in fds:
            os.close(fd)
        pidfd = os.pidfd_open(pid)
        try:
            socket.send_fds(conn, [json.dumps({"pid": pid}).encode() + b"\n"], [pidfd])
        except OSError:
            pass  # the host left: the worker reads the end of its input and goes
        finally:
            os.close(pidfd)
        conn.setblocking(False)
        self.children[pid] = conn
        self.selector.register(conn, selectors.EVENT_READ, "host")

    def _host_closed(self, conn: socket.socket) -> None:
        """A host closed its end (it sends nothing after the request)."""
        try:
            if conn.recv(4096):
                return
        except BlockingIOError:
            return
        except OSError:
            pass
        self.selector.unregister(conn)
        conn.close()
        for pid, held in self.children.items():
            if held is conn:
                self.children[pid] = None

    def _reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.children.clear()
                return
            if pid == 0:
                return
            self.last_active = time.monotonic()
            conn = self.children.pop(pid, None)
            if conn is None:
                continue
            code = os.waitstatus_to_exitcode(status)
            with contextlib.suppress(OSError):
                conn.setblocking(True)
                conn.sendall(json.dumps({"exit": code}).encode() + b"\n")
            self.selector.unregister(conn)
            conn.close()

    def _become_worker(self, request: dict[str, Any], fds: list[int], conn: socket.socket) -> None:
        """In the forked child: take the host's pipes and environment, run the worker."""
        code = 1
        try:
            signal.set_wakeup_fd(-1)
            for signum in (signal.SIGCHLD, signal.SIGTERM):
                signal.signal(signum, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            conn.close()
            for held in self.children.values():
                if held is not None:
                    held.close()
            for fd in self.own_fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
            for target, fd in enumerate(fds):
                os.dup2(fd, target)
                os.close(fd)
            os.setsid()
            os.umask(int(request["umask"]))
            os.chdir(request["cwd"])
            os.environ.clear()
            os.environ.update(request["env"])
            from medialab_tui.engine.worker.main import main

            argv = [str(a) for a in request["argv"]]
            sys.argv = ["medialab-worker", *argv]
            code = main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            import traceback

            traceback.print_exc()
        finally:
            with contextlib.suppress(BaseException):
                sys.stderr.flush()
            os._exit(code)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    directory, key = Path(args[0]), args[1]
    idle = float(args[2]) if len(args) > 2 else IDLE_S
    return _Template(directory, key, idle).serve()


if __name__ == "__main__":
    raise SystemExit(main())
