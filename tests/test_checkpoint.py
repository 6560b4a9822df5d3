"""A run interrupted after a checkpoint and resumed gives exactly the uninterrupted result."""

from functools import partial

import pytest
import torch
from conftest import assert_same

from bench.data.loaders import load_dataset
from bench.experiment.checkpoint import Checkpointer
from bench.learning.networks import create_network
from methods.base import Budget
from methods.components import create_method

SMALL = {"batch_real": 8, "steps_per_network": 2, "net_update_samples": 32, "interval": 1}


class Interrupt(Exception):
    pass


@pytest.mark.parametrize("name", ["IDC", "DREAM+", "DC", "DM"])
def test_resume_from_checkpoint_equals_uninterrupted_run(name, tmp_path):
    data = load_dataset("digits", max_per_class=12)
    make = partial(create_network, "ConvNet-3", 1, 10, data.image_size, width=8)
    method = create_method(name, "digits", 1, SMALL)
    budget = Budget(iterations=4)
    reference = method.distill(data, 1, make, budget, seed=7)

    ckpt = Checkpointer(tmp_path / "c.pt", every=1)

    def stop_after_two(iteration: int) -> None:
        if iteration == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        method.distill(data, 1, make, budget, seed=7, checkpoint=ckpt, progress=stop_after_two)
    assert ckpt.load()["iteration"] == 2
    resumed = method.distill(data, 1, make, budget, seed=7, checkpoint=ckpt)
    assert_same(resumed.images, reference.images)
    assert [r["iteration"] for r in resumed.log if "loss" in r] == [1, 2, 3, 4]


def whole(iteration: int) -> dict:
    """A checkpoint as the engine writes one."""
    return {"param": torch.zeros(2, 1, 4, 4), "opt_img": {}, "iteration": iteration, "log": [], "timings": {}}


def test_checkpoint_writes_atomically(tmp_path):
    ckpt = Checkpointer(tmp_path / "sub" / "c.pt", every=3)
    assert ckpt.load() is None and ckpt.due(3) and not ckpt.due(4)
    ckpt.save(whole(3))
    assert ckpt.load()["iteration"] == 3
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["c.pt"]
    ckpt.clear()
    assert ckpt.load() is None


def test_checkpoint_of_other_settings_is_never_resumed(tmp_path):
    Checkpointer(tmp_path / "c.pt", every=1, fingerprint="iterations=30").save(whole(20))
    assert Checkpointer(tmp_path / "c.pt", every=1, fingerprint="iterations=3").load() is None
    assert Checkpointer(tmp_path / "c.pt", every=1, fingerprint="iterations=30").load()["iteration"] == 20


def test_an_unreadable_checkpoint_is_moved_aside_once_and_the_cell_starts_afresh(tmp_path, capsys):
    from bench.experiment.checkpoint import checkpoint_for

    ckpt = checkpoint_for(tmp_path, "digits_ipc1_DC_ConvNet-3_s0", every=1, fingerprint="f")
    ckpt.path.write_bytes(b"not a tensor file")
    assert ckpt.load() is None
    assert "moved to" in capsys.readouterr().out
    assert not ckpt.path.exists()  # the next run does not meet it again
    (kept,) = (tmp_path / ".aside").iterdir()
    assert kept.name.startswith("digits_ipc1_DC_ConvNet-3_s0.checkpoint-unreadable.")
    assert kept.read_bytes() == b"not a tensor file"  # kept for inspection, never deleted
    ckpt.save(whole(1))
    assert ckpt.load()["iteration"] == 1


def test_a_tensor_file_that_is_no_checkpoint_is_moved_aside_not_called_other_settings(tmp_path, capsys):
    import torch

    from bench.experiment.checkpoint import checkpoint_for

    ckpt = checkpoint_for(tmp_path, "c", every=1, fingerprint="f")
    torch.save({"foo": torch.zeros(3)}, ckpt.path)
    assert ckpt.load() is None
    out = capsys.readouterr().out
    assert "not a checkpoint" in out and "other settings" not in out
    assert not ckpt.path.exists() and len(list((tmp_path / ".aside").iterdir())) == 1


def test_a_checkpoint_of_other_settings_is_kept_aside_never_deleted(tmp_path, capsys):
    """A smoke run (other settings) on a folder whose real run was stopped keeps the real run's work."""
    from bench.experiment.checkpoint import checkpoint_for

    cell = "digits_ipc1_DC_ConvNet-3_s0"
    checkpoint_for(tmp_path, cell, every=1, fingerprint="real").save(whole(7))
    smoke = checkpoint_for(tmp_path, cell, every=1, fingerprint="smoke")
    assert smoke.load() is None and "other settings: moved to" in capsys.readouterr().out
    smoke.save(whole(1))
    smoke.clear()
    (kept,) = (tmp_path / ".aside").iterdir()
    assert kept.name.startswith(f"{cell}.checkpoint-other-settings.")
    assert torch.load(kept, weights_only=True)["iteration"] == 7
    real = checkpoint_for(tmp_path, cell, every=1, fingerprint="real")  # the real run again: it resumes
    assert real.load()["iteration"] == 7 and "restored" in capsys.readouterr().out
    assert not any((tmp_path / ".aside").iterdir())


def test_a_checkpoint_missing_its_fields_is_moved_aside_not_failed_on(tmp_path, capsys):
    from bench.experiment.checkpoint import checkpoint_for

    ckpt = checkpoint_for(tmp_path, "digits_ipc1_DC_ConvNet-3_s0", every=1, fingerprint="f")
    torch.save({"fingerprint": "f"}, ckpt.path)
    assert ckpt.load() is None and "not a whole checkpoint (param, opt_img, iteration" in capsys.readouterr().out
    assert not ckpt.path.exists()
    torch.save({**whole(0), "fingerprint": "f"}, ckpt.path)
    assert ckpt.load() is None and "not a whole checkpoint (iteration)" in capsys.readouterr().out


def test_the_own_set_aside_checkpoint_is_resumed_when_an_interrupted_smoke_run_left_its_own(tmp_path, capsys):
    """Real run stopped, smoke run (other settings) stopped too: the real run resumes its own work, and the smoke
    run's checkpoint goes aside in turn."""
    from bench.experiment.checkpoint import checkpoint_for

    cell = "digits_ipc1_DC_ConvNet-3_s0"
    checkpoint_for(tmp_path, cell, every=1, fingerprint="real").save(whole(2))
    smoke = checkpoint_for(tmp_path, cell, every=1, fingerprint="smoke")
    assert smoke.load() is None
    smoke.save(whole(1))  # then interrupted: its checkpoint stays in .checkpoints/
    real = checkpoint_for(tmp_path, cell, every=1, fingerprint="real")
    assert real.load()["iteration"] == 2 and "restored" in capsys.readouterr().out
    (kept,) = (tmp_path / ".aside").iterdir()
    assert torch.load(kept, weights_only=True)["fingerprint"] == "smoke"  # the smoke run's work is kept too
    assert checkpoint_for(tmp_path, cell, every=1, fingerprint="smoke").load()["iteration"] == 1  # and back


@pytest.mark.parametrize("link_to", ["missing", "itself"])
def test_a_dangling_or_looping_link_in_aside_is_skipped(tmp_path, link_to):
    from bench.experiment.checkpoint import checkpoint_for

    cell = "digits_ipc1_DC_ConvNet-3_s0"
    aside = tmp_path / ".aside"
    aside.mkdir()
    link = aside / f"{cell}.checkpoint-other-settings.1"
    link.symlink_to(tmp_path / "nowhere" if link_to == "missing" else link)
    checkpoint_for(tmp_path, cell, every=1, fingerprint="real").save(whole(3))
    ckpt = checkpoint_for(tmp_path, cell, every=1, fingerprint="smoke")
    assert ckpt.load() is None  # the real checkpoint goes aside; the link is neither followed nor fatal
    assert link.is_symlink()
    assert checkpoint_for(tmp_path, cell, every=1, fingerprint="real").load()["iteration"] == 3
