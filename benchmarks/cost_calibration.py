"""Measure what ``--dry-run``'s hour estimates are calibrated from, on this machine: seconds per image through a
ConvNet-3 training step (forward + backward + SGD) at 28x28, batch 256 (matching / feature-network work) and
batch 64 (evaluation protocol B), and per image of a test pass. Writes the figures, with machine and commit, to
bench/execution/calibration/<kind>.json, which ``bench.execution.cost`` reads.

    OMP_NUM_THREADS=2 python benchmarks/cost_calibration.py            # this CPU -> calibration/cpu.json
    python benchmarks/cost_calibration.py --device cuda                # a GPU   -> calibration/gpu.json
    python benchmarks/cost_calibration.py --from-inner-loop benchmarks/measured/h200-2026-11-26-speed-657fddb.jsonl
        # no GPU at hand: derive gpu.json from a measured IDC inner loop (the same rate for every kind of step)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from bench.core.version import code_state, machine_label
from bench.learning.networks import create_network

OUT = Path(__file__).resolve().parents[1] / "bench" / "execution" / "calibration"


def seconds_per_image(device: torch.device, batch: int, train: bool, repeats: int) -> float:
    net = create_network("ConvNet-3", 1, 10, 28).to(device)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    x = torch.rand(batch, 1, 28, 28, device=device)
    y = torch.randint(0, 10, (batch,), device=device)

    def step() -> None:
        if train:
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(x), y).backward()
            opt.step()
        else:
            with torch.no_grad():
                net(x)

    for _ in range(3):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats / batch


def derive_gpu(path: Path) -> None:
    """gpu.json from the first float32, all-classes-at-once IDC line of a measured inner-loop file: MNIST IPC 10,
    factor 2, 10 classes x (64 real + 40 synthetic) images per inner loop."""
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    line = next(r for r in lines if r["method"] == "IDC" and r.get("batch_classes") and r.get("precision") == "float32")
    per_image = line["inner_loop_s"] / (10 * (64 + 40))
    record = {
        "machine": line["machine"],
        "commit": "see source",
        "source": f"{path.as_posix()}: IDC, batch_classes, float32",
        "measured": "2026-11-26",
        "image": "28x28x1",
        "network": "ConvNet-3",
        "note": "matching rate; evaluation and test passes assumed at the same per-image rate (not measured)",
        "seconds_per_image": {"train_256": per_image, "train_64": per_image, "test_512": per_image / 3},
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "gpu.json").write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps(record, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--from-inner-loop", default=None, help="a measured inner-loop JSONL (benchmarks/measured/)")
    args = parser.parse_args()
    if args.from_inner_loop:
        return derive_gpu(Path(args.from_inner_loop))
    device = torch.device(args.device)
    figures = {
        "train_256": seconds_per_image(device, 256, True, args.repeats),
        "train_64": seconds_per_image(device, 64, True, args.repeats),
        "test_512": seconds_per_image(device, 512, False, args.repeats),
    }
    kind = "gpu" if device.type == "cuda" else "cpu"
    record = {
        "machine": machine_label(),
        "commit": code_state()["git_commit"],
        "threads": torch.get_num_threads(),
        "measured": time.strftime("%Y-%m-%d"),
        "image": "28x28x1",
        "network": "ConvNet-3",
        "seconds_per_image": figures,
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{kind}.json").write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
