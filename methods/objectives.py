"""Matching distances: gradient matching (DC 'ours', IDC mse/l1), feature-mean matching, and their sum.

docs/official-code.md §2.5. A single :func:`matching_loss` covers gradient-only (DC/DSA/IDC), feature-only (DM) and
bidirectional (DREAM+) objectives, so each method is just a choice of weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

Metric = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _ours_layer(g_real: torch.Tensor, g_syn: torch.Tensor) -> torch.Tensor:
    """DC's layer-wise distance: sum over output rows of 1 - cosine (1-D tensors contribute 0)."""
    if g_real.dim() == 1:
        return torch.zeros((), device=g_real.device)
    if g_real.dim() == 4:
        g_real, g_syn = g_real.flatten(1), g_syn.flatten(1)
    elif g_real.dim() == 3:
        g_real, g_syn = g_real.flatten(1), g_syn.flatten(1)
    dots = (g_real * g_syn).sum(-1)
    norms = g_real.norm(dim=-1) * g_syn.norm(dim=-1) + 1e-6
    return (1 - dots / norms).sum()


def _cos_layer(g_real: torch.Tensor, g_syn: torch.Tensor) -> torch.Tensor:
    a, b = g_real.reshape(-1), g_syn.reshape(-1)
    return 1 - (a * b).sum() / (a.norm() * b.norm() + 1e-6)


METRICS: dict[str, Metric] = {
    "ours": _ours_layer,
    "mse": lambda a, b: ((a - b) ** 2).sum(),
    "l1": lambda a, b: (a - b).abs().sum(),
    "cos": _cos_layer,
}

# Which parameters enter the gradient distance: DC keeps every >=2-D tensor (fc included, 1-D give 0);
# IDC/DREAM keep conv weights only (no --fc, no --bias).
LAYER_RULES: dict[str, Callable[[torch.Tensor], bool]] = {
    "dc": lambda p: p.dim() >= 2,
    "conv": lambda p: p.dim() == 4,
    "all": lambda p: True,
}


def check_metric(name: str) -> Metric:
    if name not in METRICS:
        raise ValueError(f"unknown matching metric {name!r}; allowed: {sorted(METRICS)}")
    return METRICS[name]


def gradient_distance(g_real: Sequence[torch.Tensor], g_syn: Sequence[torch.Tensor], metric: str) -> torch.Tensor:
    """Sum over layers of the per-layer distance."""
    fn = check_metric(metric)
    return sum((fn(r, s) for r, s in zip(g_real, g_syn)), torch.zeros(()))


@dataclass(frozen=True)
class Objective:
    """Weights and metrics of a matching objective. gradient_weight 0 => DM; feature_weight 0 => DC/IDC."""

    gradient_weight: float = 1.0
    feature_weight: float = 0.0
    metric: str = "ours"  # gradient term metric
    feature_metric: str = "mse"  # feature-mean term metric (squared-L2 sum = DM's loss)
    layers: str = "dc"

    def __post_init__(self) -> None:
        check_metric(self.metric)
        check_metric(self.feature_metric)
        if self.layers not in LAYER_RULES:
            raise ValueError(f"unknown layer rule {self.layers!r}; allowed: {sorted(LAYER_RULES)}")
        if self.gradient_weight == 0 and self.feature_weight == 0:
            raise ValueError(
                "gradient_weight and feature_weight are both 0, so nothing is matched; allowed: at least one weight > 0"
            )


@dataclass
class MatchTerms:
    """The loss to back-propagate and its two terms (detached 0-d tensors, for the log)."""

    total: torch.Tensor
    gradient: torch.Tensor
    feature: torch.Tensor


def matching_loss(
    net: nn.Module,
    real: torch.Tensor,
    real_labels: torch.Tensor,
    syn: torch.Tensor,
    syn_labels: torch.Tensor,
    objective: Objective,
) -> MatchTerms:
    """Loss whose gradient w.r.t. ``syn`` moves the synthetic batch towards the real one.

    One forward per side returns (logits, embedding) so the bidirectional objective costs no extra pass.
    """
    need_grad = objective.gradient_weight > 0
    with torch.set_grad_enabled(need_grad):
        logits_real, feat_real = net.forward_with_features(real)
    logits_syn, feat_syn = net.forward_with_features(syn)
    total = torch.zeros((), device=syn.device)
    grad_value = feat_value = torch.zeros((), device=syn.device)  # kept on the device: no host sync per class
    if objective.feature_weight > 0:
        # features compared in float32 even under bf16 autocast (the sums over classes and steps stay exact)
        feat_term = METRICS[objective.feature_metric](feat_real.detach().float().mean(0), feat_syn.float().mean(0))
        total = total + objective.feature_weight * feat_term
        feat_value = feat_term.detach()
    if need_grad:
        keep = LAYER_RULES[objective.layers]
        params = [p for p in net.parameters() if p.requires_grad and keep(p)]
        g_real = torch.autograd.grad(F.cross_entropy(logits_real, real_labels), params)
        g_real = [g.detach() for g in g_real]
        g_syn = torch.autograd.grad(F.cross_entropy(logits_syn, syn_labels), params, create_graph=True)
        grad_term = gradient_distance(g_real, g_syn, objective.metric)
        total = total + objective.gradient_weight * grad_term
        grad_value = grad_term.detach()
    return MatchTerms(total, grad_value, feat_value)


class _WithFeatures(nn.Module):
    """``net.forward_with_features`` as a module's forward, so ``torch.func.functional_call`` can run it."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.net.forward_with_features(x)


def matching_loss_all_classes(
    net: nn.Module, real: torch.Tensor, syn: torch.Tensor, objective: Objective
) -> MatchTerms:
    """The sum over classes c of :func:`matching_loss` (real[c], syn[c], labels c) with every class in one pass:
    ``torch.func.vmap`` over the class axis of per-class gradients (and their gradients for the synthetic side).
    ``real`` is (C, B, ...), ``syn`` (C, S, ...); for networks whose outputs do not depend on the batch (no batch
    norm in training mode). Equal to the per-class loop to float rounding; it saves launches, not arithmetic."""
    from torch.func import functional_call, grad, vmap

    classes, device = real.shape[0], syn.device
    keep = LAYER_RULES[objective.layers]
    wrapper = _WithFeatures(net)
    named = dict(wrapper.named_parameters())
    matched = {k: p.detach() for k, p in named.items() if p.requires_grad and keep(p)}
    fixed = {**{k: p.detach() for k, p in named.items() if k not in matched}, **dict(wrapper.named_buffers())}

    def class_loss(weights: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor):
        logits, features = functional_call(wrapper, {**weights, **fixed}, (x,))
        return F.cross_entropy(logits, y), features

    def labels(n: int) -> torch.Tensor:
        return torch.arange(classes, device=device).view(-1, 1).expand(classes, n)

    per_class_grad = vmap(grad(class_loss, has_aux=True), in_dims=(None, 0, 0))
    with torch.no_grad():
        g_real, feat_real = per_class_grad(matched, real, labels(real.shape[1]))
    g_syn, feat_syn = per_class_grad(matched, syn, labels(syn.shape[1]))
    keys = list(matched)

    def distance(real_grads: dict[str, torch.Tensor], syn_grads: dict[str, torch.Tensor]) -> torch.Tensor:
        return gradient_distance([real_grads[k] for k in keys], [syn_grads[k] for k in keys], objective.metric)

    grad_term = vmap(distance)(g_real, g_syn).sum()
    total = objective.gradient_weight * grad_term
    feat_value = torch.zeros((), device=device)
    if objective.feature_weight > 0:
        feature_metric = METRICS[objective.feature_metric]
        feat_term = vmap(lambda r, s: feature_metric(r.mean(0), s.mean(0)))(feat_real.float(), feat_syn.float()).sum()
        total = total + objective.feature_weight * feat_term
        feat_value = feat_term.detach()
    return MatchTerms(total, grad_term.detach(), feat_value)
