"""Herding, K-Center and Forgetting on toy sets with known answers; every coreset on real digits."""

from functools import partial

import pytest
import torch

from bench.data.loaders import load_dataset
from bench.learning.networks import create_network
from methods.base import Budget
from methods.components import create_method
from methods.coresets import herding, k_center_greedy, nearest_mean


def test_herding_picks_the_point_nearest_the_mean_then_balances():
    feats = torch.tensor([[0.0, 0.0], [10.0, 0.0], [4.0, 0.0], [-2.0, 0.0], [6.0, 0.0]])  # mean (3.6, 0)
    order = herding(feats, 3).tolist()
    assert order[0] == 2  # |3.6 - 4| smallest
    # step 2: target 2*mu - s = 7.2 - 4 = 3.2 -> nearest remaining is 4? no, taken; 6 (2.8) vs 0 (3.2): 6
    assert order[1] == 4
    # step 3: 10.8 - 10 = 0.8 -> nearest remaining is 0.0
    assert order[2] == 0


def test_nearest_mean_ranks_by_distance_to_the_mean_without_balancing():
    """Table I's Herding rule: the k samples nearest the mean. Unlike greedy herding it does not balance the
    running sum, so it keeps picking near the centre (the published sets' low IPC-10 accuracy on the digits)."""
    feats = torch.tensor([[0.0, 0.0], [10.0, 0.0], [4.0, 0.0], [-2.0, 0.0], [6.0, 0.0]])  # mean (3.6, 0)
    assert nearest_mean(feats, 3).tolist() == [2, 4, 0]  # distances 0.4, 2.4, 3.6 (greedy herding: [2, 4, 0] too)
    feats = torch.tensor([[0.0], [-1.0], [-1.1], [2.0], [0.2]])  # mean 0.02
    assert nearest_mean(feats, 4).tolist() == [0, 4, 1, 2]
    assert herding(feats, 4).tolist() == [0, 4, 1, 3]  # greedy herding balances the sum (-0.8) with the far 2.0
    assert nearest_mean(feats, 9).tolist() == [0, 4, 1, 2, 3]


def test_herding_rows_use_their_rules_and_the_published_evaluation():
    """``Herding`` is the nearest-mean rule and ``Herding-greedy`` the herding pseudocode; both take the Herding
    row's published evaluation, and their rule is part of the cell's fingerprint."""
    data = load_dataset("digits", max_per_class=30)
    make = partial(create_network, "ConvNet-3", 1, 10, data.image_size, width=8)
    from methods.coresets import train_feature_network

    fn = train_feature_network(data, make, seed=4, epochs=0)
    for name, rule in (("Herding", nearest_mean), ("Herding-greedy", herding)):
        method = create_method(name, "digits", 5)
        chosen = method.distill(data, 5, make, Budget(feature_epochs=0), seed=4).meta["indices"]
        assert chosen == [int(data.class_indices(c)[i]) for c in range(10) for i in rule(fn.class_features(data, c), 5)]
        assert method.eval_protocol == create_method("Herding", "digits", 5).eval_protocol == "A-dc"
    assert (
        create_method("Herding", "digits", 5).selection_rule
        != create_method("Herding-greedy", "digits", 5).selection_rule
    )


def test_k_center_greedy_adds_the_farthest_point():
    feats = torch.tensor([[0.0], [1.0], [10.0], [5.0], [9.0]])
    gen = torch.Generator().manual_seed(0)
    picks = k_center_greedy(feats, 3, gen).tolist()
    first = picks[0]
    # after a start, the next pick is the farthest point; then the one farthest from both
    dist = (feats - feats[first]).abs().squeeze(1)
    assert picks[1] == int(dist.argmax())
    assert len(set(picks)) == 3
    if first in (0, 1):
        assert picks[1] == 2 and picks[2] == 3


def test_coresets_select_real_images_per_class():
    data = load_dataset("digits", max_per_class=40)
    make = partial(create_network, "ConvNet-3", 1, 10, data.image_size, width=16)
    for name in ["Random", "Herding", "K-Center", "Forgetting"]:
        method = create_method(name, "digits", 2)
        s = method.distill(data, 2, make, Budget(feature_epochs=2), seed=0)
        assert s.images.shape == (20, 1, 16, 16)
        assert s.labels.tolist() == [c for c in range(10) for _ in range(2)]
        idx = torch.tensor(s.meta["indices"])
        assert torch.equal(data.train_images[idx], s.images)
        assert torch.equal(data.train_labels[idx], s.labels)


def test_forgetting_picks_the_most_forgotten_learned_samples():
    """Never-learned samples (+inf in the raw counts) count as 0 events, as DC's published row implies."""
    from methods.coresets import train_feature_network

    data = load_dataset("digits", max_per_class=30)
    make = partial(create_network, "ConvNet-3", 1, 10, data.image_size, width=8)
    fn = train_feature_network(data, make, seed=1, epochs=3)
    assert fn.forgetting.shape == (len(data.train_images),)
    assert (fn.forgetting >= 0).all() and torch.isinf(fn.forgetting).any()  # some samples were never learned
    method = create_method("Forgetting", "digits", 1)
    s = method.distill(data, 1, make, Budget(feature_epochs=3), seed=1)
    as_zero = torch.where(torch.isinf(fn.forgetting), torch.zeros_like(fn.forgetting), fn.forgetting)
    for c, i in enumerate(s.meta["indices"]):
        assert as_zero[i] == as_zero[data.class_indices(c)].max()


def test_zero_feature_epochs_pick_with_the_untrained_network():
    """feature_epochs 0 herds on the seeded initialisation's features (a hypothesis for the published rows), not
    on the 30-epoch default that a falsy 0 used to fall back to; a negative count is refused."""
    from bench.experiment.settings import SettingError, check_settings
    from methods.coresets import train_feature_network

    data = load_dataset("digits", max_per_class=30)
    make = partial(create_network, "ConvNet-3", 1, 10, data.image_size, width=8)
    untrained = train_feature_network(data, make, seed=2, epochs=0)
    chosen = (
        create_method("Herding", "digits", 3).distill(data, 3, make, Budget(feature_epochs=0), seed=2).meta["indices"]
    )
    expected = [
        int(data.class_indices(c)[i]) for c in range(10) for i in nearest_mean(untrained.class_features(data, c), 3)
    ]
    assert chosen == expected
    trained = (
        create_method("Herding", "digits", 3).distill(data, 3, make, Budget(feature_epochs=1), seed=2).meta["indices"]
    )
    assert trained != chosen
    assert check_settings("defaults", {"feature_epochs": 0}, []) == {"feature_epochs": 0}
    with pytest.raises(SettingError, match="feature_epochs"):
        check_settings("defaults", {"feature_epochs": -1}, [])


def test_icarl_herding_follows_w_and_skips_repeated_picks():
    """The diagnostic's iCaRL rule (benchmarks/herding_rules.py): first the largest projection on the mean,
    then w += mean - pick; a pick made before moves w but is not added again."""
    from benchmarks.herding_rules import icarl_herding

    feats = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 1.0], [2.0, 3.0]])  # mean (1.5, 1.0)
    assert icarl_herding(feats, 3).tolist() == [3, 1, 2]
    assert icarl_herding(feats, 4).tolist() == [3, 1, 2, 0]  # two repeated picks (1, then 3) on the way to 0


def test_k_center_at_ipc_1_picks_the_herding_set():
    """Both start at the sample nearest the class-mean feature, so from one feature network their IPC-1 sets
    are the same images (why Table I's IPC-1 K-Center and Herding numbers agree); at IPC 2 they part."""
    data = load_dataset("digits", max_per_class=40)
    make = partial(create_network, "ConvNet-3", 1, 10, data.image_size, width=16)
    picks = {
        (name, ipc): create_method(name, "digits", ipc)
        .distill(data, ipc, make, Budget(feature_epochs=2), seed=3)
        .meta["indices"]
        for name in ("Herding", "K-Center")
        for ipc in (1, 2)
    }
    assert picks["Herding", 1] == picks["K-Center", 1]
    assert picks["Herding", 2] != picks["K-Center", 2]


def test_feature_network_file_keeps_every_class_embedding(tmp_path):
    """A process that loads a cached feature network reads the class embeddings the training process
    computed, instead of embedding the whole training set again; they equal a fresh embedding."""
    from bench.learning.evaluation import network_factory
    from methods import coresets
    from methods.sampling import embed_all

    data = load_dataset("digits", max_per_class=20)
    make = network_factory("ConvNet-3", data)
    trained = coresets.train_feature_network(data, make, seed=5, epochs=1, cache_dir=tmp_path)
    coresets._FEATURE_CACHE.clear()  # as in another process
    loaded = coresets.train_feature_network(data, make, seed=5, epochs=1, cache_dir=tmp_path)
    assert loaded is not trained and sorted(loaded._features) == list(range(10))
    for c in range(10):
        assert torch.equal(loaded._features[c], trained.class_features(data, c))
        fresh = embed_all(loaded.net, data.normalize(data.images_of_class(c))).cpu()
        assert torch.allclose(loaded._features[c], fresh, atol=1e-5)


def test_a_cached_feature_network_that_does_not_fit_the_data_is_trained_again(tmp_path, capsys):
    """A cached file that is truncated, or whose counts belong to other data, is not trusted: the network is
    trained again and the file replaced; the recipe and code version are part of the file's name."""
    from bench.core.files import atomic_save_tensors, load_tensor_file
    from bench.learning.evaluation import network_factory
    from methods import coresets

    data = load_dataset("digits", max_per_class=20)
    make = network_factory("ConvNet-3", data)
    path = coresets.feature_network_file(tmp_path, data, make.cache_key, 5, 1)
    coresets._FEATURE_CACHE.clear()  # a network an earlier test kept in this process would skip the file
    trained = coresets.train_feature_network(data, make, seed=5, epochs=1, cache_dir=tmp_path)
    good = load_tensor_file(path)
    leftover = path.parent / f".{path.name}.killed"  # what a save killed half-way leaves
    leftover.write_bytes(b"half")
    for broken in ({**good, "forgetting": good["forgetting"][:-1]}, {**good, "features": good["features"][:3]}, None):
        coresets._FEATURE_CACHE.clear()
        if broken is None:
            path.write_bytes(path.read_bytes()[:100])  # cut short
        else:
            atomic_save_tensors(broken, path)
        again = coresets.train_feature_network(data, make, seed=5, epochs=1, cache_dir=tmp_path)
        assert "not usable" in capsys.readouterr().out
        assert torch.equal(again.forgetting, trained.forgetting)
        assert len(load_tensor_file(path)["features"]) == 10  # replaced by a whole file
        assert not leftover.exists()
    recipe = dict(coresets.FEATURE_RECIPE)
    coresets.FEATURE_RECIPE["lr"] = 0.02
    try:
        assert coresets.feature_network_file(tmp_path, data, make.cache_key, 5, 1) != path
    finally:
        coresets.FEATURE_RECIPE.clear()
        coresets.FEATURE_RECIPE.update(recipe)
