"""The distillation engine and its parts on real digits: presets run, parts compose, samplers pick right."""

from functools import partial

import pytest
import torch
from conftest import assert_same

from bench.data.loaders import load_dataset
from bench.learning.networks import create_network
from bench.learning.training import seeded
from methods.base import Budget, list_methods
from methods.components import create_method
from methods.engine import DistillationEngine
from methods.presets import dream_plus_config
from methods.sampling import (
    RepresentativeSampler,
    batched_cluster_picks,
    batched_kmeans,
    cluster_select,
    embed_all,
    nearest_to_centres,
    padded_groups,
    seeded_kmeans,
)

SMALL = {"batch_real": 8, "steps_per_network": 2, "net_update_samples": 32, "net_update_epochs": 1, "interval": 1}


@pytest.fixture(scope="module")
def data():
    return load_dataset("digits", max_per_class=16)


@pytest.fixture(scope="module")
def make(data):
    return partial(create_network, "ConvNet-3", data.channels, data.num_classes, data.image_size, width=8)


@pytest.mark.parametrize(
    "name", ["DC", "DSA", "DM", "IDC", "DREAM", "DREAM+", "DC+rm+init+bm", "DM+rm+bm", "IDC+rm+init+bm+wu"]
)
def test_every_preset_runs_two_iterations_on_digits(name, data, make):
    method = create_method(name, "digits", 2, SMALL)
    s = method.distill(data, 2, make, Budget(iterations=2), seed=0)
    images, labels = s.decoded()
    f = method.config.factor
    assert s.images.shape == (20, 1, 16, 16) and images.shape == (20 * f * f, 1, 16, 16)
    assert torch.isfinite(s.images).all()
    assert [row["iteration"] for row in s.log if "loss" in row] == [1, 2]
    assert s.timings["image_update"] > 0


def test_every_registered_method_is_listed():
    assert {"Random", "Herding", "K-Center", "Forgetting", "DC", "DSA", "DM", "IDC", "DREAM", "DREAM+"} <= set(
        list_methods()
    )


def test_distillation_changes_the_images_and_is_deterministic(data, make):
    method = create_method("DM", "digits", 1, SMALL)
    a = method.distill(data, 1, make, Budget(iterations=3), seed=5)
    b = method.distill(data, 1, make, Budget(iterations=3), seed=5)
    init = create_method("DM", "digits", 1, SMALL).distill(data, 1, make, Budget(iterations=0), seed=5)
    assert torch.equal(a.images, b.images)
    assert not torch.allclose(a.images, init.images)


def test_preset_from_parts_equals_the_configuration_written_by_hand(data, make):
    composed = create_method("IDC+rm+init+bm+wu", "digits", 1, SMALL)
    by_hand = DistillationEngine("by-hand", dream_plus_config("digits", 1).replace(**SMALL))
    preset = create_method("DREAM+", "digits", 1, SMALL)
    assert composed.config == by_hand.config == preset.config
    a = composed.distill(data, 1, make, Budget(iterations=2), seed=3)
    b = by_hand.distill(data, 1, make, Budget(iterations=2), seed=3)
    assert_same(a.images, b.images)


def test_nearest_to_centres_on_known_clusters():
    torch.manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [10.0, 10.0], [-10.0, 5.0]])
    points = torch.cat([c + 0.5 * torch.randn(20, 2) for c in centres])
    exact = torch.tensor([5, 27, 49])
    points[exact] = centres  # one point sits exactly on each centre
    assert nearest_to_centres(points, centres).tolist() == exact.tolist()
    two = nearest_to_centres(points, centres, per_centre=2).view(3, 2)
    assert two[:, 0].tolist() == exact.tolist()
    assert all(int(j) // 20 == i for i, row in enumerate(two) for j in row)


class _Identity(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.p = torch.nn.Parameter(torch.zeros(1))

    def embed(self, x):
        return x.flatten(1)


def test_cluster_select_returns_the_image_nearest_each_kmeans_centre():
    torch.manual_seed(1)
    blobs = torch.tensor([[0.0, 0.0], [8.0, 0.0], [0.0, 8.0], [8.0, 8.0]])
    points = torch.cat([b + 0.3 * torch.randn(15, 2) for b in blobs]).view(-1, 2, 1, 1)
    flat = points.flatten(1)
    picks = cluster_select(_Identity(), points, 4, 1, seed=0)
    centres = seeded_kmeans(flat, 4, seed=0)
    # Lloyd converged: every non-empty centre is the mean of the points assigned to it
    assign = torch.cdist(flat, centres).argmin(1)
    for k in assign.unique():
        assert torch.allclose(centres[k], flat[assign == k].mean(0), atol=1e-4)
    for k, p in enumerate(picks.tolist()):
        assert p == int((flat - centres[k]).norm(dim=1).argmin())
    assert torch.equal(picks, cluster_select(_Identity(), points, 4, 1, seed=0))  # explicitly seeded


def test_batched_kmeans_equals_one_kmeans_per_class():
    """All classes in one K-Means: the same centres (to float rounding) and the same picks as fast-pytorch-kmeans
    run once per class with the class's seed, for classes of different sizes that stop after different steps."""
    torch.manual_seed(0)
    groups = [torch.randn(6, 16)[torch.randint(6, (n,))] * 4 + torch.randn(n, 16) for n in (300, 257, 410, 96)]
    seeds = [5, 77, 1234, 9]
    stacked, valid = padded_groups(groups)
    centres = batched_kmeans(stacked, valid, 8, seeds)
    for g, (features, seed) in enumerate(zip(groups, seeds)):
        assert torch.allclose(centres[g], seeded_kmeans(features, 8, seed), atol=1e-4)
    per_class = [nearest_to_centres(f, seeded_kmeans(f, 8, s), 2) for f, s in zip(groups, seeds)]
    for batched in (True, False):
        picks = batched_cluster_picks(groups, 8, 2, seeds, batched=batched)
        assert all(torch.equal(a, b) for a, b in zip(per_class, picks))
    small = [groups[0], groups[1][:5]]  # a class smaller than per_centre keeps its own cap, the others theirs
    picks = batched_cluster_picks(small, 2, 6, seeds[:2], batched=True)
    assert [len(p) for p in picks] == [12, 10]


def test_representative_refresh_equals_per_class_clustering(data, make):
    """One embedding pass over every image and the batched K-Means pick what DREAM's per-class rule picks."""
    net = make()
    sampler = RepresentativeSampler(n_clusters=3, samples_per_cluster=1, interval=1)
    sampler.start_network(net, data, seeded(4))
    sampler.refresh(0, net, data, data.normalize, data.train_images)
    for c in range(data.num_classes):
        idx = data.class_indices(c)
        expected = idx[cluster_select(net, data.train_images[idx], 3, 1, sampler._seed + c * 7919)]
        assert torch.equal(sampler.batch_indices(c, data), expected)


def test_all_classes_at_once_first_step_of_a_bidirectional_dc(data, make):
    """DC+rm+init+bm (DC's cosine distance plus the feature term) amplifies float rounding over steps: its
    per-class path alone moves by 1e-3 between 1 and 2 CPU threads after 3 networks. So compare one step."""
    method = create_method("DC+rm+init+bm", "digits", 2, {**SMALL, "steps_per_network": 1})
    per_class, batched = (
        method.distill(data, 2, make, Budget(iterations=1), seed=4, batch_classes=b) for b in (False, True)
    )
    assert torch.allclose(per_class.images, batched.images, atol=1e-5)


def test_representative_sampler_refreshes_every_interval(data, make):
    net = make()
    sampler = RepresentativeSampler(n_clusters=4, samples_per_cluster=2, interval=3)
    sampler.start_network(net, data, seeded(0))
    sampler.refresh(0, net, data, data.normalize, data.train_images)
    first = sampler.batch_indices(0, data)
    assert len(first) == 8 and set(first.tolist()) <= set(data.class_indices(0).tolist())
    sampler.refresh(1, net, data, data.normalize, data.train_images)  # not a refresh step: same batch
    assert torch.equal(sampler.batch_indices(0, data), first)
    assert 0 < sampler.embed_seconds < sampler.seconds


def test_bf16_sampler_embeds_under_autocast_and_clusters_float32_features(data, make):
    """Opt-in bf16 embeds with bf16 arithmetic (features differ from float32's) but K-Means gets float32
    features, and the picks stay members of their class."""
    net = make()
    full, half = (embed_all(net, data.train_images[:64], dtype) for dtype in (None, torch.bfloat16))
    assert full.dtype == half.dtype == torch.float32
    assert not torch.equal(full, half) and torch.allclose(full, half, rtol=0.05, atol=0.05)
    sampler = RepresentativeSampler(n_clusters=3, samples_per_cluster=1, interval=1, autocast_dtype=torch.bfloat16)
    sampler.start_network(net, data, seeded(4))
    sampler.refresh(0, net, data, data.normalize, data.train_images)
    for c in range(data.num_classes):
        assert set(sampler.batch_indices(c, data).tolist()) <= set(data.class_indices(c).tolist())


def test_warm_up_changes_the_network(data, make):
    engine = create_method("DREAM+", "digits", 1, SMALL)
    run_cls = __import__("methods.engine", fromlist=["_Run"])._Run
    warm = run_cls("w", engine.config, data, 1, make, 0, torch.device("cpu"))
    cold = run_cls("c", engine.config.replace(warmup_epochs=0), data, 1, make, 0, torch.device("cpu"))
    warm_net, _ = warm.network(4)
    cold_net, _ = cold.network(4)
    diffs = [not torch.equal(a, b) for a, b in zip(warm_net.parameters(), cold_net.parameters())]
    assert any(diffs)
    assert warm.timer.seconds["warmup"] > 0


@pytest.mark.parametrize("sampler", ["random", "representative"])
def test_mmd_diagnostic_is_logged_for_the_matched_batch(sampler, data, make):
    method = create_method("IDC", "digits", 1, {**SMALL, "sampler": sampler, "mmd_diagnostic": True})
    s = method.distill(data, 1, make, Budget(iterations=2), seed=0)
    mmd = [row["mmd"] for row in s.log if "mmd" in row]
    assert len(mmd) == 2 * 2 and all(v >= 0 for v in mmd)  # interval 1: every step of both networks


@pytest.mark.parametrize("momentum,equal", [(0.0, True), (0.5, False)])
def test_idc_per_class_steps_equal_one_step_over_all_classes_only_without_momentum(momentum, equal, data, make):
    """Each class's loss reads only its own slice of the images, with the network fixed during a step, so the
    official per-class steps equal one step over all slices when the image optimiser has no momentum. With
    IDC's momentum 0.5 they do not: each per-class step also moves the other slices by their momentum, so a
    batched engine must reproduce that, not assume the two are the same."""
    runs = [
        create_method("IDC", "digits", 2, {**SMALL, "momentum_img": momentum, "per_class_step": per_class})
        .distill(data, 2, make, Budget(iterations=1), seed=3)
        .images
        for per_class in (True, False)
    ]
    assert torch.allclose(runs[0], runs[1], atol=1e-6) == equal


@pytest.mark.parametrize("name", ["DM", "DM+rm", "DC", "DSA", "IDC", "DREAM", "DREAM+"])
def test_all_classes_at_once_gives_the_per_class_images(name, data, make):
    """The batched step (all classes in one pass: one forward per side for feature matching, vmap over classes
    for gradient matching, IDC's momentum-coupled per-class steps in closed form) makes the same images as the
    per-class path from the same seed, to float rounding, and draws the same random numbers."""
    method = create_method(name, "digits", 2, SMALL)
    per_class = method.distill(data, 2, make, Budget(iterations=3), seed=4, batch_classes=False)
    batched = method.distill(data, 2, make, Budget(iterations=3), seed=4, batch_classes=True)
    assert torch.allclose(per_class.images, batched.images, atol=1e-5)
    losses = [[row["loss"] for row in s.log if "loss" in row] for s in (per_class, batched)]
    assert losses[0] == pytest.approx(losses[1], rel=1e-4)


@pytest.mark.parametrize("name, batch_classes", [("IDC", False), ("IDC", True), ("DM", True), ("DC", False)])
def test_bf16_precision_is_opt_in_and_moves_the_images_the_same_way(name, batch_classes, data, make):
    """``precision: bfloat16`` runs the network's passes under bf16 autocast: the images differ from float32's
    (so it is really on) but move in the same direction from the same start; float32 stays the default."""
    assert create_method(name, "digits", 2, SMALL).config.precision == "float32"
    start = create_method(name, "digits", 2, SMALL).distill(data, 2, make, Budget(iterations=0), seed=3).images
    moved = {}
    for precision in ("float32", "bfloat16"):
        method = create_method(name, "digits", 2, {**SMALL, "precision": precision})
        s = method.distill(data, 2, make, Budget(iterations=2), seed=3, batch_classes=batch_classes)
        assert torch.isfinite(s.images).all()
        moved[precision] = (s.images - start).flatten()
    assert not torch.equal(moved["float32"], moved["bfloat16"])
    assert torch.nn.functional.cosine_similarity(moved["float32"], moved["bfloat16"], dim=0) > 0.9


def test_unknown_precision_is_refused_naming_the_allowed_values():
    with pytest.raises(ValueError, match="precision='fp16'.*bfloat16"):
        create_method("IDC", "digits", 1, {"precision": "fp16"})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (the pinned, non-blocking copy path)")
def test_host_draws_reach_the_gpu_unchanged_while_the_gpu_is_busy():
    """Copies queued behind a long kernel, their host sources dropped at once (so pinned blocks could be
    reused too early): every copy still arrives with its own values."""
    from bench.core.transfer import to_device

    torch.cuda.synchronize()
    torch.cuda._sleep(200_000_000)  # keep the stream busy while the copies are queued behind it
    copies = [to_device(torch.full((4096,), k, dtype=torch.long), "cuda") for k in range(64)]
    torch.cuda.synchronize()
    assert all(bool((c == k).all()) for k, c in enumerate(copies))
