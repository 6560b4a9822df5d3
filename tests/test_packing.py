"""Several cells at once (local ``--workers``, ``cells_per_gpu`` under submitit) give the same records as one
cell at a time: every cell computes from its own seed, whatever runs beside it."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from run_helpers import run_matrix

from bench.core.files import load_tensor_file

ROOT = Path(__file__).resolve().parents[1]
TINY = {
    "name": "packtiny",
    "datasets": ["digits"],
    "ipc": [1],
    "methods": ["Random", "DC", "DM"],
    "archs": ["ConvNet-3"],
    "seeds": [0],
    "profiles": {
        "mini": {"max_per_class": 20, "defaults": {"iterations": 2, "batch_real": 8, "eval_epochs": 3, "eval_runs": 1}}
    },
}


def _run(matrix: Path, results: Path, *extra: str) -> subprocess.CompletedProcess:
    return run_matrix(matrix, results, *extra, timeout=900, threads=1)


def _records(root: Path) -> dict[str, tuple[list[float], torch.Tensor | None]]:
    out = {}
    for path in sorted(root.glob("*/result.json")):
        synthetic = path.parent / "synthetic.pt"
        images = load_tensor_file(synthetic)["images"] if synthetic.is_file() else None
        out[path.parent.name] = (json.loads(path.read_text())["accuracies"]["ConvNet-3"], images)
    return out


def _same(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b) and len(a) == 3
    for cell_id, (accs, images) in a.items():
        assert accs == b[cell_id][0], cell_id
        assert torch.allclose(images, b[cell_id][1], atol=1e-6), cell_id


@pytest.mark.slow
def test_packed_cells_equal_unpacked_ones(tmp_path: Path) -> None:
    matrix = tmp_path / "m.yaml"
    matrix.write_text(yaml.safe_dump(TINY))
    alone = _run(matrix, tmp_path / "alone")
    assert alone.returncode == 0, alone.stderr
    packed = _run(matrix, tmp_path / "packed", "--workers", "2")
    assert packed.returncode == 0, packed.stderr
    assert "2 at once" in packed.stderr
    matrix.write_text(yaml.safe_dump({**TINY, "launcher": {"cells_per_gpu": 2, "timeout_min": 10}}))
    jobs = _run(matrix, tmp_path / "jobs", "--executor", "submitit-local")
    assert jobs.returncode == 0, jobs.stderr
    assert "3 cell(s) as 2 job(s)" in jobs.stdout
    matrix.write_text(yaml.safe_dump({**TINY, "separate_evaluation": True}))
    split = _run(matrix, tmp_path / "split", "--workers", "2")  # evaluation cells wait for their sets
    assert split.returncode == 0, split.stderr
    evaluated = list((tmp_path / "split" / "packtiny" / "mini").glob("*@ConvNet-3/result.json"))
    assert len(evaluated) == 3
    for path in evaluated:  # an evaluation record names the set it evaluated, as its distillation record does
        record = json.loads(path.read_text())
        source = json.loads((path.parent.parent / record["cell"]["source"] / "result.json").read_text())
        assert record["provenance"]["set_sha256"] == source["provenance"]["set_sha256"]
    reference = _records(tmp_path / "alone" / "packtiny" / "mini")
    _same(reference, _records(tmp_path / "packed" / "packtiny" / "mini"))
    _same(reference, _records(tmp_path / "jobs" / "packtiny" / "mini"))


def test_bad_worker_count_is_refused(tmp_path: Path) -> None:
    matrix = tmp_path / "m.yaml"
    matrix.write_text(yaml.safe_dump(TINY))
    proc = _run(matrix, tmp_path / "r", "--workers", "0")
    assert proc.returncode == 2 and "--workers 0; allowed: an integer >= 1" in proc.stderr


PARENT = """
import os, sys, time
from concurrent.futures import ProcessPoolExecutor
import multiprocessing
from bench.execution.pool import _worker_init
if __name__ == "__main__":
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(1, mp_context=context, initializer=_worker_init, initargs=(1, os.getpid()))
    print(pool.submit(os.getpid).result(), flush=True)
    pool.submit(time.sleep, 120)
    time.sleep(120)
"""


def _alive(pid: int) -> bool:
    """Running and not a zombie (an orphan's exit may go unreaped in a container)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux-only")
def test_workers_exit_when_the_run_is_killed(tmp_path: Path) -> None:
    """A killed ``bench.cli.run`` must not leave workers computing cells on the user's cores."""
    import signal
    import time

    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parent.parent,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    worker = int(parent.stdout.readline())
    assert _alive(worker)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 20
    while _alive(worker) and time.monotonic() < deadline:
        time.sleep(0.2)
    survived = _alive(worker)
    if survived:
        os.kill(worker, signal.SIGKILL)  # leave nothing behind when the test fails
    assert not survived


def test_feature_networks_are_prepared_once_before_the_cells_that_need_them() -> None:
    from bench.execution.pool import next_ready, packed_tasks
    from bench.experiment.matrix import load_matrix
    from bench.experiment.plan import plan_cell

    cells = load_matrix(ROOT / "matrices" / "fidelity.yaml", "cpu").cells
    queue = packed_tasks([plan_cell(c, c.dataset) for c in cells])  # planned by name: no data needed
    preparations = [t for t in queue if t.prepares is not None]
    # one feature network per dataset (the cpu profile shares seed 0, 2 epochs), each prepared once, first
    assert sorted(t.prepares[0] for t in preparations) == ["fashionmnist", "mnist"]
    assert queue[:2] == preparations
    waiting = {t.plan.id for t in queue if t.needs is not None}
    assert waiting == {c.id for c in cells if c.method in ("Herding", "K-Center", "Forgetting")}
    # with one network in preparation, a free worker takes the next cell that does not wait for it
    queue = queue[2:]
    first = queue[next_ready(queue, set())]
    assert first.needs is None and first.plan.cell.method == "Random"
    mnist = next(t.prepares for t in preparations if t.prepares[0] == "mnist")
    ready = queue[next_ready(queue, {mnist})]
    assert ready.plan.cell.dataset == "mnist" and ready.plan.cell.ipc == 10
    assert next_ready([t for t in queue if t.needs is not None], set()) is None


@pytest.mark.slow
def test_packed_coresets_share_one_prepared_feature_network(tmp_path: Path) -> None:
    matrix = tmp_path / "m.yaml"
    coresets = {
        **TINY,
        "methods": ["Herding", "K-Center", "Random"],
        "profiles": {
            "mini": {"max_per_class": 20, "defaults": {"feature_epochs": 1, "eval_epochs": 3, "eval_runs": 1}}
        },
    }
    matrix.write_text(yaml.safe_dump(coresets))
    alone = _run(matrix, tmp_path / "alone")
    assert alone.returncode == 0, alone.stderr
    packed = _run(matrix, tmp_path / "packed", "--workers", "2")
    assert packed.returncode == 0, packed.stderr
    out = packed.stdout + packed.stderr
    assert out.count("prepared digits") == 1 and "feature network seed 0 epochs 1" in out
    nets = list((tmp_path / "packed" / "packtiny" / "mini" / ".feature_nets").glob("*.pt"))
    assert len(nets) == 1
    reference = _records(tmp_path / "alone" / "packtiny" / "mini")
    packed_records = _records(tmp_path / "packed" / "packtiny" / "mini")
    assert sorted(reference) == sorted(packed_records) and len(reference) == 3
    for cell_id, (accs, _) in reference.items():
        assert packed_records[cell_id][0] == accs, cell_id


def crash_in(cell_prefix: str, marker: str, task, root: str, data_root: str | None, checkpoint_every: int):
    """A worker's task runner that kills its own process when it reaches ``cell_prefix``'s cell: once if
    ``marker`` names a file to leave behind, every time if it is empty."""
    from bench.execution.pool import run_task

    if task.prepares is None and task.plan.id.startswith(cell_prefix) and not (marker and Path(marker).exists()):
        if marker:
            Path(marker).write_text("crashed")
        os._exit(1)  # as the kernel's out-of-memory killer would: no exception, no clean-up
    return run_task(task, root, data_root, checkpoint_every)


@pytest.mark.slow
def test_a_dead_worker_is_replaced_and_only_a_cell_that_always_kills_it_fails(tmp_path: Path) -> None:
    import functools

    from bench.execution.pool import run_packed
    from bench.experiment.matrix import load_matrix
    from bench.experiment.plan import plan_cells

    matrix = tmp_path / "m.yaml"
    matrix.write_text(yaml.safe_dump(TINY))
    cells = plan_cells(load_matrix(matrix, "mini").cells, None)
    said: list[str] = []
    once = functools.partial(crash_in, "digits_ipc1_DC", str(tmp_path / "crashed"))
    failed = run_packed(cells, tmp_path / "once", None, 0, 2, report=said.append, runner=once)
    assert failed == [] and (tmp_path / "crashed").exists()
    assert any("a worker died" in line for line in said), said
    assert sorted(p.parent.name for p in (tmp_path / "once").glob("*/result.json")) == sorted(c.id for c in cells)

    said.clear()
    always = functools.partial(crash_in, "digits_ipc1_DC", "")
    failed = run_packed(cells, tmp_path / "always", None, 0, 2, report=said.append, runner=always)
    dc = [c.id for c in cells if c.cell.method == "DC"]
    assert failed == dc and any("died every time" in line for line in said), said
    done = sorted(p.parent.name for p in (tmp_path / "always").glob("*/result.json"))
    assert done == sorted(c.id for c in cells if c.cell.method != "DC")


def refuse_preparations(task, root: str, data_root: str | None, checkpoint_every: int):
    """A worker's task runner whose shared preparations fail (as a missing disk or a bad recipe would)."""
    from bench.execution.pool import run_task

    if task.prepares is not None:
        raise RuntimeError("no feature network today")
    return run_task(task, root, data_root, checkpoint_every)


@pytest.mark.slow
def test_cells_of_a_failed_preparation_fail_at_once_and_the_others_run(tmp_path: Path) -> None:
    from bench.execution.pool import run_packed
    from bench.experiment.matrix import load_matrix
    from bench.experiment.plan import plan_cells

    matrix = tmp_path / "m.yaml"
    matrix.write_text(yaml.safe_dump({**TINY, "methods": ["Herding", "K-Center", "Random"]}))
    cells = plan_cells(load_matrix(matrix, "mini").cells, None)
    said: list[str] = []
    failed = run_packed(cells, tmp_path / "r", None, 0, 2, report=said.append, runner=refuse_preparations)
    assert sorted(failed) == sorted(c.id for c in cells if c.cell.method != "Random")
    assert any("no feature network today" in line and "not run" in line for line in said), said
    assert [p.parent.name for p in (tmp_path / "r").glob("*/result.json")] == [
        c.id for c in cells if c.cell.method == "Random"
    ]
    assert not (tmp_path / "r" / ".feature_nets").exists()
