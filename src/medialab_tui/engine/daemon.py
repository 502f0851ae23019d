"""What the engine host and its clients tell each other through the store.

- The host publishes who it is (`host.info`): pid, user, start time, keep-alive,
  since when it has been idle and which models its worker holds. `doctor` shows it.
- A client asks the host to leave (`host.stop`), after the running job or at once;
  the request names the host's pid, so it never reaches a later host.
- Each open TUI heartbeats (`client.<node>.<pid>`): while one is fresh the host stays
  up however long it idles.
- `medialab run` hands a warm host its pipeline to validate and submit
  (`submit.ask.<token>`, answered in `submit.reply.<token>`): the host has the
  validation imported already, so the client pays for none of it before its job starts.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import time
from dataclasses import dataclass
from typing import Any

from medialab_tui.config import current_user
from medialab_tui.store.db import Store

HOST_INFO_KEY = "host.info"
STOP_KEY = "host.stop"
CLIENT_PREFIX = "client."
# A TUI writes its heartbeat this often; one not renewed for CLIENT_STALE_S has gone
# (killed without a word, or its machine lost power) and no longer keeps the host up.
CLIENT_BEAT_S = 5.0
CLIENT_STALE_S = 20.0


def _get(store: Store, key: str) -> dict[str, Any] | None:
    text = store.setting(key)
    return None if text is None else _loads(text) or None


def _put(store: Store, key: str, value: dict[str, Any]) -> None:
    store.put_setting(key, json.dumps(value))


def _drop(store: Store, key: str) -> None:
    store.drop_settings(key)


# -- the host's card ------------------------------------------------------------------


def publish_host(store: Store, info: dict[str, Any]) -> None:
    _put(store, HOST_INFO_KEY, info)


def forget_host(store: Store, pid: int) -> None:
    """The host with this pid is leaving: its card goes (unless a later host's is there)."""
    info = host_info(store)
    if info is not None and info.get("pid") == pid:
        _drop(store, HOST_INFO_KEY)


def host_info(store: Store) -> dict[str, Any] | None:
    """What the host last said of itself (it may have gone since: check the lock)."""
    return _get(store, HOST_INFO_KEY)


def keep_alive_left(info: dict[str, Any], clients: int, now: float | None = None) -> str:
    """`4.5 min`, `held by 1 open TUI`, `busy`: how long the host will stay, in words."""
    from medialab_tui.text import human_seconds

    idle_since = info.get("idle_since")
    if idle_since is None:
        return "busy (the keep-alive starts when the queue is empty)"
    if clients:
        return f"held by {clients} open TUI{'s' if clients > 1 else ''}"
    now = time.time() if now is None else now
    left = max(0.0, float(info.get("keep_alive", 0)) - (now - float(idle_since)))
    return f"{human_seconds(left)} left of {human_seconds(float(info.get('keep_alive', 0)))}"


# -- stop requests ------------------------------------------------------------------


@dataclass(frozen=True)
class StopRequest:
    now: bool
    by: str
    at: float = 0.0


def request_stop(store: Store, host_pid: int, *, now: bool) -> None:
    _put(store, STOP_KEY, {"pid": host_pid, "now": now, "by": current_user(), "at": time.time()})


def stop_requested(store: Store, host_pid: int) -> StopRequest | None:
    """The stop request meant for the host with this pid, if there is one."""
    value = _get(store, STOP_KEY)
    if value is None or value.get("pid") != host_pid:
        return None
    return _stop_of(value)


def last_stop(store: Store) -> StopRequest | None:
    """The latest stop request, for whichever host (kept until the next host starts)."""
    value = _get(store, STOP_KEY)
    return None if value is None else _stop_of(value)


def _stop_of(value: dict[str, Any]) -> StopRequest:
    return StopRequest(
        now=bool(value.get("now")), by=str(value.get("by", "?")), at=float(value.get("at", 0))
    )


def clear_stop(store: Store) -> None:
    _drop(store, STOP_KEY)


# -- attached TUIs ----------------------------------------------------------------------


def client_key() -> str:
    return f"{CLIENT_PREFIX}{socket.gethostname()}.{os.getpid()}"


def beat(store: Store, key: str) -> None:
    """This TUI is still open."""
    _put(store, key, {"at": time.time(), "user": current_user(), "pid": os.getpid()})


def leave(store: Store, key: str) -> None:
    _drop(store, key)


def attached_clients(store: Store, now: float | None = None) -> int:
    """How many TUIs have heartbeat lately; the stale rows of gone ones are removed."""
    now = time.time() if now is None else now
    fresh, stale = 0, []
    for key, value in store.settings(CLIENT_PREFIX).items():
        try:
            at = float(json.loads(value).get("at", 0))
        except (ValueError, AttributeError, TypeError):
            at = 0.0
        if now - at <= CLIENT_STALE_S:
            fresh += 1
        else:
            stale.append(key)
    if stale:
        store.drop_settings(*stale)
    return fresh


# -- runs handed to the host to submit ---------------------------------------------------

ASK_PREFIX = "submit.ask."
REPLY_PREFIX = "submit.reply."
# A request no host took within this long was withdrawn by its client (or the client
# is gone): a host that finds one that old drops it unsubmitted. Likewise a reply
# nobody read.
ASK_STALE_S = 60.0


def ask_submit(store: Store, request: dict[str, Any]) -> str:
    """Ask the host to validate and submit a pipeline; the token its reply goes under."""
    token = secrets.token_hex(8)
    _put(store, ASK_PREFIX + token, {**request, "at": time.time(), "pid": os.getpid()})
    return token


def withdraw_ask(store: Store, token: str) -> bool:
    """Take back a request: True when no host had taken it (it will not be submitted)."""
    return store.take_setting(ASK_PREFIX + token) is not None


def take_reply(store: Store, token: str) -> dict[str, Any] | None:
    """The host's reply to the request `token`, once it is there (it is removed)."""
    if store.setting(REPLY_PREFIX + token) is None:
        return None  # a read, not a write, while it waits
    text = store.take_setting(REPLY_PREFIX + token)
    return None if text is None else _loads(text)


def take_asks(store: Store, now: float | None = None) -> list[tuple[str, dict[str, Any]]]:
    """The host: the requests waiting, each taken so that it is handled once, oldest
    first. Stale requests and replies are dropped."""
    now = time.time() if now is None else now
    taken = []
    stale = [
        key
        for key, text in store.settings(REPLY_PREFIX).items()
        if now - float(_loads(text).get("at", 0)) > ASK_STALE_S
    ]
    if stale:
        store.drop_settings(*stale)
    for key in store.settings(ASK_PREFIX):
        text = store.take_setting(key)
        if text is None:
            continue  # withdrawn meanwhile
        request = _loads(text)
        if now - float(request.get("at", 0)) <= ASK_STALE_S:
            taken.append((key.removeprefix(ASK_PREFIX), request))
    return sorted(taken, key=lambda pair: float(pair[1].get("at", 0)))


def put_reply(store: Store, token: str, reply: dict[str, Any]) -> None:
    _put(store, REPLY_PREFIX + token, {**reply, "at": time.time()})


def _loads(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
