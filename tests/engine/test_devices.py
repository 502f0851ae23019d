"""Several devices on one host: config `devices` runs one worker per device, jobs are
placed on the worker that holds their model, runs are served fairly, and one worker's
crash retries its job without stopping the others.

The process tests share one engine host with two CPU workers (`devices = ["cpu",
"cpu"]`) for the whole file; placement and the device plan are tested as the pure
functions they are.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import Home, query, stop_engine_host, submit, txt2img_toml, wait_for
from medialab_tui.config import Config, DataDir
from medialab_tui.engine import pool
from medialab_tui.engine.pool import Candidate, SlotView, pick_job, pick_slot, plan_devices
from medialab_tui.errors import InputError

# -- the device plan -----------------------------------------------------------------


def test_two_cpu_workers_split_the_cores_and_the_memory() -> None:
    plan = plan_devices(
        Config(devices=("cpu", "cpu")), gpus=[], cpu_count=8, ram_bytes=16 * 1024**3
    )
    assert [p.label for p in plan] == ["cpu:0", "cpu:1"]
    assert [p.device for p in plan] == ["cpu", "cpu"]
    assert [p.threads for p in plan] == [4, 4]
    assert [p.cache_budget_gb for p in plan] == [4.0, 4.0]
    # Given threads and budget are kept; one core still gives each worker a thread.
    kept = plan_devices(
        Config(devices=("cpu", "cpu", "cpu"), threads=2, cache_budget_gb=3.0),
        gpus=[],
        cpu_count=1,
    )
    assert [(p.threads, p.cache_budget_gb) for p in kept] == [(None, None)] * 3
    odd = plan_devices(Config(devices=("cpu",) * 3), gpus=[], cpu_count=2, ram_bytes=0)
    assert [p.threads for p in odd] == [1, 1, 1]


def test_auto_is_every_visible_gpu_each_pinned_to_its_own() -> None:
    plan = plan_devices(Config(), gpus=["2", "3"])
    assert [p.label for p in plan] == ["cuda:0", "cuda:1"]
    assert [dict(p.env) for p in plan] == [
        {"CUDA_VISIBLE_DEVICES": "2"},
        {"CUDA_VISIBLE_DEVICES": "3"},
    ]
    # Found by "auto", a worker keeps the config's device (a CPU-only torch falls back).
    assert [p.device for p in plan] == ["auto", "auto"]
    # One GPU or none: one worker, as before.
    (one,) = plan_devices(Config(), gpus=["0"])
    assert (one.label, one.device, dict(one.env)) == ("cuda:0", "auto", {})
    (cpu,) = plan_devices(Config(device="cpu"), gpus=["0", "1"])
    assert (cpu.label, cpu.device) == ("cpu:0", "cpu")


def test_listed_gpus_are_pinned_and_labels_are_unique() -> None:
    plan = plan_devices(Config(devices=("cuda:1", "cuda:0", "cuda:1")), gpus=["4", "5"])
    assert [p.label for p in plan] == ["cuda:1", "cuda:0", "cuda:1/2"]
    assert [p.env["CUDA_VISIBLE_DEVICES"] for p in plan] == ["5", "4", "5"]
    assert {p.device for p in plan} == {"cuda"}
    mixed = plan_devices(Config(devices=("cuda", "cuda", "mps")), gpus=[])
    assert [p.label for p in mixed] == ["cuda:0", "cuda:1", "mps:0"]


def test_visible_gpus_read_the_environment_first() -> None:
    assert pool.visible_gpus({"CUDA_VISIBLE_DEVICES": "1, 3"}) == ["1", "3"]
    assert pool.visible_gpus({"CUDA_VISIBLE_DEVICES": ""}) == []
    assert pool.visible_gpus({"CUDA_VISIBLE_DEVICES": "-1"}) == []


def test_a_cluster_without_its_module_is_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "medialab_tui.engine.cluster", None)
    with pytest.raises(InputError) as err:
        pool.make_workers(Config(cluster="tcp://head:8786"), DataDir(tmp_path).ensure())
    text = str(err.value)
    assert "tcp://head:8786" in text and "not available" in text and "\n" not in text


def test_the_first_worker_logs_where_it_always_did(tmp_path: Path) -> None:
    data = DataDir(tmp_path)
    workers = pool.make_workers(Config(devices=("cpu", "cpu")), data)
    assert [w.label for w in workers] == ["cpu:0", "cpu:1"]
    assert pool.log_path(data, 0, "cpu:0") == data.logs / "worker.log"
    assert pool.log_path(data, 1, "cpu:1") == data.logs / "worker-cpu-1.log"


@pytest.mark.parametrize(
    ("value", "said"),
    [
        ('"all"', 'must be "auto" or a list of devices'),
        ('["gpu0"]', "must name a device"),
        ("[]", "must list 1 to 64 devices"),
    ],
)
def test_bad_devices_are_one_line_errors(tmp_path: Path, value: str, said: str) -> None:
    root = tmp_path / "home"
    root.mkdir(mode=0o700)
    (root / "config.toml").write_text(f"devices = {value}\n")
    proc = Home(root).cli("jobs")
    assert proc.returncode == 2, proc.stderr
    assert said in proc.stderr and "devices" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


# -- placement -----------------------------------------------------------------------


def test_priority_wins_then_the_run_with_fewest_running_then_the_oldest() -> None:
    big, small = Candidate(3, run_id=1), Candidate(9, run_id=2)
    assert pick_job([big, small], {}) == big  # the oldest
    assert pick_job([big, small], {1: 2}) == small  # the small run gets its turn
    assert pick_job([big, small], {1: 1, 2: 1}) == big
    urgent = Candidate(20, run_id=1, priority=1)
    assert pick_job([urgent, small], {1: 5}) == urgent  # priority over fairness
    assert pick_job([], {}) is None


def test_a_job_goes_to_the_slot_holding_its_model_else_the_least_loaded() -> None:
    a = SlotView(0, loaded=("/m/sd15",), idle_since=5.0, recent=3)
    b = SlotView(1, loaded=("/m/xl",), idle_since=1.0, recent=0)
    assert pick_slot([a, b], "/m/sd15") == 0
    assert pick_slot([a, b], "/m/xl") == 1
    assert pick_slot([a, b], "/m/other") == 1  # fewer recent jobs
    c = SlotView(2, idle_since=0.5, recent=0)
    assert pick_slot([a, b, c], None) == 2  # idle longest
    dead = SlotView(3, idle_since=0.0, recent=0, alive=False)
    assert pick_slot([a, dead], None) == 0  # a worker that is up first
    assert pick_slot([], "/m/sd15") is None


# -- two CPU workers on one host -------------------------------------------------------


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory, scanned_home: Path) -> Iterator[Home]:
    """A data directory with two CPU workers, and its engine host serving it."""
    root = tmp_path_factory.mktemp("devices") / "home"
    shutil.copytree(scanned_home, root)
    with (root / "config.toml").open("a") as f:
        f.write('devices = ["cpu", "cpu"]\nkeep_alive = 600\n')
    home = Home(root)
    proc = home.spawn("serve")

    def both_up() -> bool:
        """both workers to say ready"""
        card = host_card(home)
        return len(card.get("workers", [])) == 2 and all(w["device"] for w in card["workers"])

    try:
        wait_for(both_up, timeout=120)
        yield home
    finally:
        stop_engine_host(root)  # SIGTERM to the host, SIGKILL if it does not leave
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)


def host_card(home: Home) -> dict[str, Any]:
    rows = query(home, "SELECT value FROM setting WHERE key='host.info'")
    return json.loads(rows[0][0]) if rows else {}


def workers(home: Home) -> dict[str, dict[str, Any]]:
    return {w["label"]: w for w in host_card(home).get("workers", [])}


def idle_cards(home: Home) -> dict[str, dict[str, Any]]:
    """The workers' cards once none is busy: the host writes a worker's card after the
    end of its job, a moment after the run is seen to end."""

    def idle() -> dict[str, dict[str, Any]] | None:
        cards = workers(home)
        return cards if cards and not any(w["busy"] for w in cards.values()) else None

    return wait_for(idle, timeout=30)


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


def test_two_workers_split_an_eight_job_run(pair: Home) -> None:
    run_id = submit(pair, txt2img_toml(prompts=["a harbour"], seeds=list(range(1, 9))), "split")
    finish(pair, run_id)
    jobs = query(pair, "SELECT status, worker FROM job WHERE run_id=?", run_id)
    assert len(jobs) == 8 and {status for status, _ in jobs} == {"succeeded"}
    assert {worker for _, worker in jobs} == {"cpu:0", "cpu:1"}
    arts = query(pair, "SELECT path, params FROM artifact WHERE run_id=?", run_id)
    assert len(arts) == 8 and all(Path(path).is_file() for path, _ in arts)
    assert {json.loads(params)["worker"] for _, params in arts} == {"cpu:0", "cpu:1"}
    listed = {j["id"]: j for j in pair.json("jobs")}
    assert {listed[f"j{i}"]["worker"] for i in range(1, 9)} == {"cpu:0", "cpu:1"}


def test_a_job_goes_where_its_model_is_loaded(pair: Home) -> None:
    first = submit(pair, txt2img_toml(prompts=["x"], seeds=[1], model="demo-sd15-single"), "a")
    finish(pair, first)
    (holder,) = query(pair, "SELECT worker FROM job WHERE run_id=?", first)[0]
    loads = {label: w["loads"] for label, w in idle_cards(pair).items()}
    # The other worker has run fewer jobs lately: without affinity it would get these.
    for seed in (2, 3):
        again = submit(
            pair, txt2img_toml(prompts=["x"], seeds=[seed], model="demo-sd15-single"), "b"
        )
        finish(pair, again)
        assert query(pair, "SELECT worker FROM job WHERE run_id=?", again)[0][0] == holder
    cards = idle_cards(pair)
    assert {label: w["loads"] for label, w in cards.items()} == loads
    assert any("demo-sd15-single" in p for p in cards[holder]["loaded"])


def test_a_small_run_is_served_before_a_big_run_ends(pair: Home) -> None:
    pair.cli("pause", check=True)
    try:
        big = submit(pair, txt2img_toml(prompts=["big"], seeds=list(range(1, 7))), "big")
        small = submit(pair, txt2img_toml(prompts=["small"], seeds=[1]), "small")
    finally:
        pair.cli("resume", check=True)
    finish(pair, big)
    finish(pair, small)
    big_starts = [row[0] for row in query(pair, "SELECT started_at FROM job WHERE run_id=?", big)]
    (small_start,) = query(pair, "SELECT started_at FROM job WHERE run_id=?", small)[0]
    # Both runs waited: the big run's first job and the small run's start together.
    assert small_start < sorted(big_starts)[1]


def test_a_killed_worker_retries_its_job_while_the_other_goes_on(pair: Home) -> None:
    run_id = submit(pair, txt2img_toml(prompts=["a storm"], seeds=[1, 2, 3, 4], steps=40), "crash")

    def both_busy() -> dict[str, dict[str, Any]]:
        """both workers to be stepping through a job"""
        found = workers(pair)
        jobs = [w["job"] for w in found.values() if w["busy"]]
        if len(jobs) < 2:
            return {}
        steps = query(pair, "SELECT step FROM job WHERE id IN (?, ?)", *jobs)
        return found if all(step > 0 for (step,) in steps) else {}

    before = wait_for(both_busy, timeout=120)
    victim, survivor = before["cpu:0"], before["cpu:1"]
    os.kill(victim["pid"], signal.SIGKILL)
    finish(pair, run_id, timeout=240)
    crashed = query(pair, "SELECT status, attempts, crashes FROM job WHERE id=?", victim["job"])
    assert crashed == [("succeeded", 2, 1)]
    kept = query(pair, "SELECT status, crashes, worker FROM job WHERE id=?", survivor["job"])
    assert kept == [("succeeded", 0, "cpu:1")]
    after = idle_cards(pair)
    assert after["cpu:1"]["pid"] == survivor["pid"]  # never stopped
    assert after["cpu:0"]["pid"] not in (None, victim["pid"])  # restarted
    assert len(query(pair, "SELECT id FROM artifact WHERE run_id=?", run_id)) == 4


async def test_the_header_says_how_many_workers_are_busy(pair: Home) -> None:
    from conftest import until
    from medialab_tui.app import MedialabApp
    from medialab_tui.config import load_config
    from medialab_tui.store.db import Store

    data = DataDir(pair.root).ensure()
    app = MedialabApp(data, load_config(data), Store(data.db_path), host_engine=False)
    async with app.run_test(size=(120, 36)) as pilot:
        await until(pilot, lambda: "0/2 busy" in app.status_line())
        assert "/2 busy" in app.status_line(2)


def test_doctor_shows_each_worker_of_the_host(pair: Home) -> None:
    report = pair.json("doctor")
    assert isinstance(report, dict)
    lines = report["engine_workers"].splitlines()
    assert [line.split(":")[0] + ":" + line.split(":")[1] for line in lines] == ["cpu:0", "cpu:1"]
    assert all(": cpu (pid " in line for line in lines)
    assert any("demo-sd15" in line for line in lines)  # what a worker holds


def test_a_worker_given_to_the_engine_is_its_first_slot(home: Home) -> None:
    from medialab_tui.config import load_config
    from medialab_tui.engine.scheduler import Engine, Running
    from medialab_tui.engine.worker_client import WorkerProcess
    from medialab_tui.store.db import Store

    data = DataDir(home.root)
    config = Config(devices=("cpu", "cpu"))
    given = WorkerProcess(config, data.logs / "worker.log", "cpu", label="cpu:0")
    store = Store(data.db_path)
    engine = Engine(data, store, load_config(data), given, watch_models=False)
    engine.config = config
    engine._make_slots()
    assert [slot.label for slot in engine.slots] == ["cpu:0", "cpu:1"]
    assert engine.slots[0].worker is given and engine.slots[0].started
    assert not engine.slots[1].started  # `run` starts it
    # A remote worker names the node that runs the job in its `started` event.
    submit(home, txt2img_toml(prompts=["p"], seeds=[1]))
    job = engine.claim_next()
    assert job is not None
    state = Running(job, worker="cpu:0")
    engine._handle({"event": "started", "job_id": job.id, "worker": "node-b/gpu1"}, state)
    assert query(home, "SELECT worker FROM job WHERE id=?", job.id) == [("node-b/gpu1",)]
    assert state.worker == "node-b/gpu1"
