"""A cluster of boxes through Dask: a real `distributed.LocalCluster` of two worker
processes, each offering `GPU=1` and keeping one medialab worker warm, serves an
engine host whose config names the scheduler (`cluster = "tcp://…"`).

The nodes have a medialab data directory of their own (`MEDIALAB_HOME` in the
environment of the cluster's worker processes) whose model roots hold the demo
models; the host's store and artifacts are a separate `home`: nothing is shared but
the scheduler's address.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from conftest import Home, query, stop_engine_host, submit, txt2img_toml, wait_for
from medialab_tui.config import Config, DataDir
from medialab_tui.doctor import describe_cluster_nodes
from medialab_tui.engine.cluster import RemoteWorker, describe_cluster
from medialab_tui.engine.worker.protocol import Item, ModelRef, RunCommand

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, scanned_home: Path) -> Iterator[Any]:
    """Two Dask worker processes with `GPU=1` each, on a node data dir of their own."""
    node = tmp_path_factory.mktemp("node") / "home"
    shutil.copytree(scanned_home, node)
    # Given to the nannies, so a worker they restart after a kill has it too.
    local = distributed.LocalCluster(
        n_workers=2,
        processes=True,
        threads_per_worker=1,
        resources={"GPU": 1},
        dashboard_address=":0",
        env={"MEDIALAB_HOME": str(node)},
    )
    try:
        yield local
    finally:
        local.close()


@pytest.fixture(scope="module")
def host(
    tmp_path_factory: pytest.TempPathFactory, scanned_home: Path, cluster: Any
) -> Iterator[Home]:
    """The host's data directory (no models of its own are run here) and its engine."""
    root = tmp_path_factory.mktemp("cluster-host") / "home"
    shutil.copytree(scanned_home, root)
    with (root / "config.toml").open("a") as f:
        f.write(f'cluster = "{cluster.scheduler_address}"\nkeep_alive = 600\n')
    home = Home(root)
    proc = home.spawn("serve")

    def nodes_up() -> bool:
        """the host to have a slot per Dask worker, both said ready"""
        card = host_card(home)
        return len(card.get("workers", [])) == 2 and all(w["device"] for w in card["workers"])

    try:
        wait_for(nodes_up, timeout=120)
        yield home
    finally:
        stop_engine_host(root)
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)


def host_card(home: Home) -> dict[str, Any]:
    rows = query(home, "SELECT value FROM setting WHERE key='host.info'")
    return json.loads(rows[0][0]) if rows else {}


def finish(home: Home, run_id: int, timeout: float = 180) -> None:
    def ended() -> bool:
        """the run to end"""
        return query(home, "SELECT status FROM run WHERE id=?", run_id)[0][0] in (
            "succeeded",
            "failed",
            "cancelled",
        )

    wait_for(ended, timeout=timeout)
    status = query(home, "SELECT status FROM run WHERE id=?", run_id)[0][0]
    assert status == "succeeded", query(home, "SELECT id, error FROM job WHERE run_id=?", run_id)


def dask_pids(cluster: Any) -> dict[str, int]:
    """Each Dask worker's name (as jobs record it, after the host name) → its pid."""
    with distributed.Client(cluster.scheduler_address, set_as_default=False) as client:
        pids = client.run(os.getpid)
        names = {
            addr: str(w["name"]).split("://", 1)[-1]
            for addr, w in client.scheduler_info(n_workers=-1)["workers"].items()
        }
    return {names[addr]: pid for addr, pid in pids.items()}


def left_at_scheduler(cluster: Any) -> tuple[list[str], list[str]]:
    """What medialab left on the scheduler: its events (cancels) and its topics."""

    def look(dask_scheduler: Any) -> tuple[list[str], list[str]]:
        events = [str(name) for name in dask_scheduler.extensions["events"]._events]
        topics = [str(t) for t in dask_scheduler._broker._topics if str(t).startswith("medialab")]
        return events, topics

    with distributed.Client(cluster.scheduler_address, set_as_default=False) as client:
        return client.run_on_scheduler(look)


def test_an_eight_job_run_is_spread_over_both_nodes_into_the_host_store(
    host: Home, cluster: Any
) -> None:
    run_id = submit(host, txt2img_toml(prompts=["a harbour"], seeds=list(range(1, 9))), "eight")
    finish(host, run_id)
    jobs = query(host, "SELECT status, worker FROM job WHERE run_id=?", run_id)
    assert len(jobs) == 8 and {status for status, _ in jobs} == {"succeeded"}
    assert len({worker for _, worker in jobs}) == 2, jobs
    arts = query(host, "SELECT path, params FROM artifact WHERE run_id=?", run_id)
    assert len(arts) == 8
    for path, params in arts:
        assert Path(path).is_relative_to(host.root / "artifacts")
        with Image.open(path) as image:
            assert image.size == (64, 64)
        assert Path(path).stat().st_mode & 0o077 == 0
        assert json.loads(params)["worker"]
    card = host_card(host)
    nodes = card["workers"][0].get("nodes") or json.loads(
        query(host, "SELECT value FROM setting WHERE key='worker_info'")[0][0]
    ).get("nodes", [])
    assert len(nodes) == 2 and all(n["resources"] == {"GPU": 1.0} for n in nodes)
    # Nothing per job stays on the scheduler: no cancel event, one topic per slot.
    wait_for(lambda: not left_at_scheduler(cluster)[0], timeout=30)
    topics = left_at_scheduler(cluster)[1]
    assert len(topics) == 2 and all(t.startswith("medialab-slot-") for t in topics), topics


def test_a_killed_dask_worker_mid_job_is_a_crash_and_every_job_succeeds(
    host: Home, cluster: Any
) -> None:
    # The pids are looked up first, so that the kill follows the sighting at once: a
    # client's round trip to the scheduler could outlast the job it is meant to hit.
    pids = dask_pids(cluster)
    run_id = submit(
        host, txt2img_toml(prompts=["a storm"], seeds=list(range(1, 9)), steps=40), "kill"
    )

    def stepping() -> tuple[int, str] | None:
        """a job to be stepping on a node"""
        rows = query(
            host,
            "SELECT id, worker FROM job WHERE run_id=? AND status='running' AND step > 0",
            run_id,
        )
        return rows[0] if rows else None

    job_id, worker = wait_for(stepping, timeout=120)
    name = worker.split("/", 1)[-1]
    os.kill(pids[name], signal.SIGKILL)
    finish(host, run_id, timeout=240)
    crashed = query(host, "SELECT status, crashes FROM job WHERE id=?", job_id)
    assert crashed == [("succeeded", 1)]
    others = query(host, "SELECT crashes FROM job WHERE run_id=? AND id != ?", run_id, job_id)
    assert all(n == 0 for (n,) in others)
    assert len(query(host, "SELECT id FROM artifact WHERE run_id=?", run_id)) == 8


def test_cancel_of_a_remote_job_stops_it_within_a_step(host: Home, cluster: Any) -> None:
    run_id = submit(host, txt2img_toml(prompts=["long"], seeds=[1], steps=400, size=128), "long")
    job_id = query(host, "SELECT id FROM job WHERE run_id=?", run_id)[0][0]
    wait_for(lambda: query(host, "SELECT step FROM job WHERE id=?", job_id)[0][0] >= 1, timeout=120)
    asked = time.monotonic()
    host.cli("cancel", f"j{job_id}", check=True)
    wait_for(
        lambda: query(host, "SELECT status FROM job WHERE id=?", job_id)[0][0] == "cancelled",
        timeout=15,
    )
    took = time.monotonic() - asked
    events = dict(
        query(
            host,
            "SELECT action, details FROM event WHERE object_id=? AND action IN "
            "('job.cancel_sent', 'job.stopped')",
            job_id,
        )
    )
    sent = json.loads(events["job.cancel_sent"])["step"]
    stopped = json.loads(events["job.stopped"])["step"]
    assert stopped < 400 and stopped - sent <= 1, (sent, stopped, took)
    wait_for(lambda: not left_at_scheduler(cluster)[0], timeout=30)  # the cancel event too


def test_a_model_missing_on_a_node_fails_naming_the_node(cluster: Any, tmp_path: Path) -> None:
    command = RunCommand(
        job_id=1,
        run_id=1,
        stage="txt2img",
        params={},
        model=ModelRef(name="elsewhere", path="/nowhere/elsewhere.safetensors", sha256="ab" * 32),
        item=Item(prompt="x", seed=1),
        out_dir=str(tmp_path / "out"),
    )

    async def run() -> dict[str, Any]:
        worker = RemoteWorker(cluster.scheduler_address, DataDir(tmp_path), "dask:0")
        await worker.start()
        await worker.wait_ready()
        await worker.send(command)
        try:
            while True:
                event = await worker.next_event(60)
                assert event is not None
                if event["event"] in ("done", "failed", "cancelled"):
                    return event
        finally:
            await worker.shutdown()

    event = asyncio.run(run())
    assert event["kind"] == "missing_model"
    assert "elsewhere" in event["message"] and "ab" * 5 in event["message"]
    assert "node " in event["message"] and "/" in event["message"].split("node ")[1]


def test_doctor_describes_the_cluster(cluster: Any) -> None:
    found = describe_cluster(cluster.scheduler_address)
    assert found["gpus"] == 2 and found["workers"] == 2
    assert {n["device"] for n in found["nodes"]} == {"cpu"}
    bad = describe_cluster("tcp://127.0.0.1:1", timeout=3)
    assert "error" in bad and "\n" not in bad["error"]
    said = describe_cluster_nodes(Config(cluster=cluster.scheduler_address))["cluster"]
    assert "2 workers, 2 GPU units" in said and said.count("GPU=1") == 2


def test_serve_cluster_takes_a_scheduler_address_only(home: Home) -> None:
    proc = home.cli("serve", "--cluster", "http://head:8786")
    assert proc.returncode == 2
    assert "--cluster" in proc.stderr and "tcp://head:8786" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert (
        not (home.root / "engine.lock").exists()
        or "pid" not in (home.root / "engine.lock").read_text()
    )
