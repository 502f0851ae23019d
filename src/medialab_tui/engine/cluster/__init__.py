"""Jobs on a Dask cluster (config `cluster`): one engine slot per GPU of its workers.

The host stays the only writer of its store: `host.RemoteWorker` submits each job as
a Dask task needing `GPU=1`; on every Dask worker `node.MedialabNode` keeps one
medialab worker warm and runs the job there, models resolved by sha256 in that
node's own model roots; inputs and outputs travel as bytes, model weights never.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from typing import Any

from medialab_tui.config import Config, DataDir
from medialab_tui.engine.cluster.host import CONNECT_TIMEOUT_S, RemoteWorker, _describe_all

__all__ = ["RemoteWorker", "cluster_workers", "describe_cluster", "gpu_units"]

COUNT_TIMEOUT_S = 15.0


async def _ask(address: str, describe: bool) -> dict[str, Any]:
    from distributed import Client

    from medialab_tui.engine.cluster.node import PLUGIN_NAME, MedialabNode

    client = await Client(
        address,
        asynchronous=True,
        timeout=CONNECT_TIMEOUT_S,
        name="medialab-doctor",
        set_as_default=False,
    )
    try:
        identity = await client.scheduler.identity(n_workers=-1)
        workers = dict(identity.get("workers", {}))
        found: dict[str, Any] = {
            "address": address,
            "gpus": sum(int(w.get("resources", {}).get("GPU", 0)) for w in workers.values()),
            "workers": len(workers),
        }
        if describe:
            await client.register_plugin(MedialabNode(), name=PLUGIN_NAME)
            found["nodes"] = await _describe_all(client)
        return found
    finally:
        await client.close()


def _in_a_thread(address: str, describe: bool, timeout: float) -> dict[str, Any]:
    """Ask the scheduler from a loop of its own (callers may be inside one)."""
    pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="medialab-dask")
    try:
        return pool.submit(asyncio.run, _ask(address, describe)).result(timeout)
    finally:
        pool.shutdown(wait=False)


def gpu_units(address: str) -> int:
    """How many `GPU` resource units the cluster's workers offer now."""
    return int(_in_a_thread(address, False, COUNT_TIMEOUT_S)["gpus"])


def cluster_workers(config: Config, data: DataDir) -> list[RemoteWorker]:
    """One slot per GPU unit of the cluster at `config.cluster` (one when it cannot be
    asked now: that slot's start says why); they connect when started."""
    try:
        count = gpu_units(config.cluster)
    except Exception:  # noqa: BLE001 - unreachable now: the slot's start reports it
        count = 1
    return [RemoteWorker(config.cluster, data, f"dask:{i}") for i in range(max(1, count))]


def describe_cluster(address: str, timeout: float = 120.0) -> dict[str, Any]:
    """The cluster for `doctor`: its workers, their devices, resources and loaded
    models (asking starts each node's medialab worker); `error` when unreachable."""
    try:
        return _in_a_thread(address, True, timeout)
    except Exception as exc:  # noqa: BLE001 - doctor says it, in one line
        return {"address": address, "error": f"{type(exc).__name__}: {exc}".splitlines()[0]}
