"""Class-incremental evaluation on digits as 5 steps of 2 classes: an accuracy per step, on all seen classes."""

from functools import partial

import pytest
import torch

from bench.data.loaders import load_dataset
from bench.experiment.continual import (
    class_order,
    classes_subset,
    relabel,
    run_continual,
    training_protocol,
)
from bench.learning.networks import create_network
from methods.base import Budget
from methods.components import create_method


@pytest.fixture(scope="module")
def data():
    return load_dataset("digits", max_per_class=30)


def test_orders_relabelling_and_step_subsets(data):
    order = class_order(10, 0, 5, sort_groups=True)
    assert sorted(order) == list(range(10))
    assert all(order[2 * g] < order[2 * g + 1] for g in range(5))  # IDC sorts inside each step
    ordered = relabel(data, order)
    first_class = order[0]
    assert torch.equal(ordered.train_labels == 0, data.train_labels == first_class)
    step = classes_subset(ordered, 4, 2)
    assert step.num_classes == 2 and set(step.train_labels.tolist()) == {0, 1}
    assert len(step.train_images) == (ordered.train_labels >= 4).logical_and(ordered.train_labels < 6).sum()


@pytest.mark.parametrize("protocol", ["idc", "dc"])
def test_every_step_reports_accuracy_on_all_seen_classes(data, protocol):
    method = create_method("Random", "digits", 2)
    make_eval = partial(create_network, "ConvNet-3", 1, 10, data.image_size, width=16)
    proto = training_protocol(protocol)
    proto = type(proto)(**{**proto.__dict__, "epochs": 15})
    result = run_continual(
        data,
        method,
        2,
        5,
        lambda subset: partial(create_network, "ConvNet-3", 1, subset.num_classes, subset.image_size, width=8),
        make_eval,
        protocol,
        proto,
        Budget(),
        seed=0,
        order_seed=0,
    )
    assert len(result.accuracies) == 5
    assert all(0.0 <= a <= 100.0 for a in result.accuracies)
    # step 1 is a 2-way problem on real digits: far above the 10-way chance level
    assert result.accuracies[0] > 60.0


def test_distilled_memories_work_too(data):
    method = create_method("DM", "digits", 1, {"batch_real": 8})
    make_eval = partial(create_network, "ConvNet-3", 1, 10, data.image_size, width=8)
    proto = training_protocol("idc")
    proto = type(proto)(**{**proto.__dict__, "epochs": 3})
    result = run_continual(
        data,
        method,
        1,
        5,
        lambda s: partial(create_network, "ConvNet-3", 1, s.num_classes, s.image_size, width=8),
        make_eval,
        "idc",
        proto,
        Budget(iterations=2),
        seed=0,
        order_seed=0,
    )
    assert len(result.accuracies) == 5


def test_unknown_protocol_is_rejected(data):
    with pytest.raises(ValueError, match="allowed"):
        run_continual(
            data,
            create_method("Random", "digits", 1),
            1,
            5,
            lambda s: None,
            lambda: None,
            "icarl",
            training_protocol("idc"),
            Budget(),
            0,
            0,
        )


@pytest.mark.filterwarnings("ignore:reduction. .mean. divides")
def test_distillation_term_equals_the_official_weighting():
    """IDC: nn.KLDivLoss() (mean over batch x n_old elements) x T^2 x beta x n_old."""
    from bench.experiment.continual import distillation_term

    g = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(8, 20, generator=g), torch.randn(8, 20, generator=g)
    t, n_old = 2.0, student.shape[1]
    official = (
        torch.nn.KLDivLoss()(torch.log_softmax(student / t, 1), torch.softmax(teacher / t, 1)) * t**2 * 1.0 * n_old
    )
    assert torch.allclose(distillation_term(student, teacher, t), official)
