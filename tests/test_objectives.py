"""Matching distances against hand-computed values; bidirectional = feature term + gradient term."""

import math

import pytest
import torch

from bench.data.loaders import load_dataset
from bench.learning.networks import create_network
from methods.objectives import METRICS, Objective, gradient_distance, matching_loss


def test_dc_ours_distance_by_hand():
    # conv layer: 2 output rows of 2x1x1x1; fc: 1 row; bias (1-D) must contribute 0
    g_real = [torch.tensor([[[[1.0]], [[0.0]]], [[[1.0]], [[1.0]]]]), torch.tensor([[3.0, 4.0]]), torch.tensor([5.0])]
    g_syn = [torch.tensor([[[[0.0]], [[1.0]]], [[[2.0]], [[2.0]]]]), torch.tensor([[4.0, 3.0]]), torch.tensor([-5.0])]
    # rows: (1,0)vs(0,1): cos 0 -> 1; (1,1)vs(2,2): cos 1 -> 0; (3,4)vs(4,3): cos 24/25 -> 1/25; bias -> 0
    expected = (1 - 0 / (1 * 1 + 1e-6)) + (1 - 4 / (math.sqrt(2) * math.sqrt(8) + 1e-6)) + (1 - 24 / (25 + 1e-6))
    assert float(gradient_distance(g_real, g_syn, "ours")) == pytest.approx(expected, rel=1e-6)


def test_mse_and_l1_are_sums():
    a, b = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([0.0, 0.0, 5.0])
    assert float(METRICS["mse"](a, b)) == pytest.approx(1 + 4 + 4)
    assert float(METRICS["l1"](a, b)) == pytest.approx(1 + 2 + 2)


@pytest.fixture(scope="module")
def setup():
    data = load_dataset("digits")
    torch.manual_seed(0)
    net = create_network("ConvNet-3", 1, 10, data.image_size, width=16)
    real = data.normalize(data.images_of_class(3)[:16])
    syn = data.normalize(data.images_of_class(3)[16:18]).clone().requires_grad_(True)
    y_real = torch.full((16,), 3)
    y_syn = torch.full((2,), 3)
    return net, real, y_real, syn, y_syn


def test_bidirectional_loss_is_the_sum_of_its_terms(setup):
    net, real, y_real, syn, y_syn = setup
    grad_only = matching_loss(net, real, y_real, syn, y_syn, Objective(1.0, 0.0, "mse", "mse", "conv"))
    feat_only = matching_loss(net, real, y_real, syn, y_syn, Objective(0.0, 1.0, "mse", "mse", "conv"))
    both = matching_loss(net, real, y_real, syn, y_syn, Objective(1.0, 1.0, "mse", "mse", "conv"))
    assert float(both.total.detach()) == pytest.approx(
        float(grad_only.total.detach()) + float(feat_only.total.detach()), rel=1e-5
    )
    assert float(both.gradient) == pytest.approx(float(grad_only.gradient), rel=1e-5)
    assert float(both.feature) == pytest.approx(float(feat_only.feature), rel=1e-5)
    assert float(grad_only.feature) == 0 and float(feat_only.gradient) == 0


def test_feature_term_is_dm_squared_distance_of_mean_embeddings(setup):
    net, real, y_real, syn, y_syn = setup
    terms = matching_loss(net, real, y_real, syn, y_syn, Objective(0.0, 1.0, feature_metric="mse"))
    expected = (net.embed(real).mean(0) - net.embed(syn).mean(0)).pow(2).sum()
    assert float(terms.total) == pytest.approx(float(expected), rel=1e-5)


def test_gradient_loss_reaches_the_synthetic_images(setup):
    net, real, y_real, syn, y_syn = setup
    terms = matching_loss(net, real, y_real, syn, y_syn, Objective(1.0, 0.0, "ours", layers="dc"))
    (g,) = torch.autograd.grad(terms.total, syn)
    assert g.abs().sum() > 0


def test_unknown_metric_names_allowed_values():
    with pytest.raises(ValueError, match="allowed"):
        Objective(metric="huber")
