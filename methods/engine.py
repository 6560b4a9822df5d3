"""One distillation engine with swappable parts (docs/official-code.md §14, "Lessons").

Parts: representation (factor f, pixel or normalised space), initialiser, real-batch sampler, matching
objective, network schedule (fresh net per outer iteration, warm-up, in-loop training on synthetic or real
data) and a Siamese augmentation policy. DC, DSA, DM, IDC, DREAM and DREAM+ are all presets of
:class:`EngineConfig` (see :mod:`methods.presets`).
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable

import torch
from torch import nn

from bench.core.transfer import to_device
from bench.data.augment import DiffAugment
from bench.data.loaders import ImageDataset
from bench.learning.training import (
    autocast_to,
    batch_dependent,
    build_net,
    default_device,
    derive_seed,
    seeded,
    train_epoch,
)
from methods.base import DistilledSet, Method, NetFactory
from methods.config import CHOICES, Budget, EngineConfig, validate  # noqa: F401  (CHOICES: re-exported)
from methods.initializers import initial_images
from methods.objectives import (
    METRICS,
    MatchTerms,
    matching_loss,
    matching_loss_all_classes,
)
from methods.representation import decode
from methods.sampling import RandomSampler, RepresentativeSampler, linear_mmd

Evaluator = Callable[[DistilledSet], float]


class _Timer:
    """Seconds per phase. ``sync`` (e.g. torch.cuda.synchronize) waits for queued device work before each
    reading, so a phase is charged its own GPU time (benchmarks); off by default, as it stalls the queue."""

    def __init__(self, sync: Callable[[], None] | None = None) -> None:
        self.seconds: dict[str, float] = {}
        self.sync = sync

    def add(self, key: str, since: float) -> float:
        if self.sync is not None:
            self.sync()
        now = time.perf_counter()
        self.seconds[key] = self.seconds.get(key, 0.0) + now - since
        return now


class DivergedError(RuntimeError):
    """The synthetic images or the matching loss became non-finite: the run has no result."""


class PerClassMomentum:
    """IDC's image update in closed form: one SGD step (momentum m, learning rate lr) per class, in class order,
    sharing one momentum buffer over the class-major image tensor. A class's loss depends only on its own slice,
    but every step moves every slice by its momentum, so class j's gradient G_j is taken after j momentum-only
    moves: p_j - lr (m + ... + m^j) b_j. After all C steps, with carried = m^(j+1) b_j + G_j, the buffer is
    m^(C-1-j) carried and the slice p_turn_j - lr (1 + m + ... + m^(C-1-j)) carried. Same result as C
    optimiser steps to float rounding (tested), from one gradient evaluation for all classes."""

    def __init__(self, param: torch.Tensor, opt: torch.optim.Optimizer, classes: int) -> None:
        group = opt.param_groups[0]
        if (
            len(opt.param_groups) != 1
            or group["weight_decay"]
            or group["dampening"]
            or group["nesterov"]
            or group.get("maximize")
        ):
            raise ValueError(
                "the closed-form per-class step needs plain SGD with momentum (no weight decay, "
                "dampening, nesterov or maximize)"
            )
        self.param, self.opt, self.classes = param, opt, classes
        self.lr, self.m = float(group["lr"]), float(group["momentum"])
        buf = opt.state[param].get("momentum_buffer")
        self.buf = torch.zeros_like(param) if buf is None else buf
        m, shape = self.m, (classes, *([1] * (param.dim() - 1)))
        coef = lambda values: torch.tensor(values, dtype=param.dtype, device=param.device).view(shape)  # noqa: E731
        self.before = coef([sum(m**i for i in range(1, j + 1)) for j in range(classes)])
        self.after = coef([sum(m**i for i in range(classes - j)) for j in range(classes)])
        self.carry = coef([m ** (j + 1) for j in range(classes)])
        self.decay = coef([m ** (classes - 1 - j) for j in range(classes)])

    def _by_class(self, t: torch.Tensor) -> torch.Tensor:
        return t.view(self.classes, -1, *t.shape[1:])

    def turn_points(self) -> torch.Tensor:
        """Each class's slice where it stands when that class's step comes (a new tensor)."""
        p, b = self._by_class(self.param.detach()), self._by_class(self.buf)
        self.turn = (p - self.lr * self.before.unsqueeze(1) * b).view_as(self.param)
        return self.turn.clone()

    def finish(self, grad: torch.Tensor) -> None:
        """Apply the C steps given every class's gradient (each nonzero only on its own slice)."""
        b, g = self._by_class(self.buf), self._by_class(grad)
        carried = self.carry.unsqueeze(1) * b + g
        with torch.no_grad():
            self.param.copy_(
                (self._by_class(self.turn) - self.lr * self.after.unsqueeze(1) * carried).view_as(self.param)
            )
        self.opt.state[self.param]["momentum_buffer"] = (self.decay.unsqueeze(1) * carried).view_as(self.param)


class DistillationEngine(Method):
    """Runs an :class:`EngineConfig`. Hooks: ``evaluate`` (curves), ``checkpoint`` (resumable state)."""

    def __init__(self, name: str, config: EngineConfig) -> None:
        validate(config)
        self.name = name
        self.config = config

    def distill(
        self,
        data: ImageDataset,
        ipc: int,
        make_net: NetFactory,
        budget: Budget,
        seed: int,
        evaluate: Evaluator | None = None,
        checkpoint: Any = None,
        progress: Callable[[int], None] | None = None,
        batch_classes: bool | None = None,
        sync_timing: bool = False,
        **unused_hooks: Any,
    ) -> DistilledSet:
        """``batch_classes``: push all classes through the network at once where that computes the same thing
        (None: on a GPU; see ``_Run.batches_all_classes``); it changes speed, not results (to float rounding).
        ``sync_timing``: wait for the GPU at every phase boundary so phase times are exact (benchmarks)."""
        cfg = self.config.with_budget(budget)
        device = default_device()
        run = _Run(self.name, cfg, data, ipc, make_net, seed, device)
        if sync_timing and device.type == "cuda":
            run.timer.sync = run.sampler.sync = torch.cuda.synchronize
        run.batch_classes = batch_classes
        return run.execute(budget.eval_every, evaluate, checkpoint, progress)


class _Run:
    """State of one distillation run (kept out of the engine so the engine stays a pure description)."""

    def __init__(
        self,
        name: str,
        cfg: EngineConfig,
        data: ImageDataset,
        ipc: int,
        make_net: NetFactory,
        seed: int,
        device: torch.device,
    ):
        self.name, self.cfg, self.data, self.ipc, self.seed, self.device = name, cfg, data, ipc, seed, device
        self.make_net = make_net
        self.timer = _Timer()
        self.mean = torch.tensor(data.mean, device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(data.std, device=device).view(1, -1, 1, 1)
        self.match_aug = DiffAugment(cfg.match_aug, cfg.match_aug_mode) if cfg.match_aug else None
        self.net_aug = DiffAugment(cfg.net_aug, cfg.net_aug_mode) if cfg.net_aug else None
        self.sampler = (
            RepresentativeSampler(
                max(cfg.batch_real // cfg.samples_per_cluster, 1),
                cfg.samples_per_cluster,
                cfg.interval,
                cfg.cluster_normalized,
                self.autocast_dtype,
            )
            if cfg.sampler == "representative"
            else RandomSampler(cfg.batch_real)
        )
        self.train_images = data.train_images.to(device)
        self.train_labels = data.train_labels.to(device)
        self.log: list[dict[str, float]] = []
        self.resumed_from = 0
        self.batch_classes: bool | None = None

    # --- spaces -------------------------------------------------------------------------------
    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def param_to_input(self, x: torch.Tensor) -> torch.Tensor:
        return self.normalize(x) if self.cfg.space == "pixel" else x

    def param_to_pixel(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.cfg.space == "pixel" else x * self.std + self.mean

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return torch.bfloat16 if self.cfg.precision == "bfloat16" else None

    def arithmetic(self) -> torch.autocast:
        """bf16 autocast around the matching passes when ``precision`` asks for it (off by default: the official
        code runs float32; images, optimiser states, features compared and losses stay float32 either way)."""
        return autocast_to(self.device, self.autocast_dtype)

    def distilled(self, param: torch.Tensor) -> DistilledSet:
        images = self.param_to_pixel(param.detach()).cpu()
        labels = torch.arange(self.data.num_classes).repeat_interleave(self.ipc)
        meta = {"method": self.name, "resumed_from": self.resumed_from}
        return DistilledSet(images, labels, self.cfg.factor, list(self.log), dict(self.timer.seconds), meta)

    # --- networks -----------------------------------------------------------------------------
    def network(self, iteration: int) -> tuple[nn.Module, torch.optim.Optimizer | None]:
        cfg = self.cfg
        net = build_net(self.make_net, derive_seed(self.seed, "matching network", iteration), self.device)
        if cfg.objective.gradient_weight == 0 and cfg.net_update == "none" and not cfg.warmup_epochs:
            net.requires_grad_(False)  # DM: the network is a fixed random feature extractor
            return net, None
        opt = torch.optim.SGD(
            net.parameters(), lr=cfg.net_lr, momentum=cfg.net_momentum, weight_decay=cfg.net_weight_decay
        )
        for _ in range(cfg.warmup_epochs):
            start = time.perf_counter()
            self.train_on_real(net, opt, seeded(derive_seed(self.seed, "warm-up batches", iteration)), max_samples=None)
            self.timer.add("warmup", start)
        return net, opt

    def train_on_real(
        self, net: nn.Module, opt: torch.optim.Optimizer, gen: torch.Generator, max_samples: int | None
    ) -> None:
        train_epoch(
            net,
            opt,
            self.train_images,
            self.train_labels,
            batch_size=self.cfg.batch_real,
            to_input=self.normalize,
            gen=gen,
            aug=self.net_aug,
            cutmix_p=self.cfg.cutmix_p,
            max_samples=max_samples,
            autocast_dtype=self.autocast_dtype,
        )

    def update_network(
        self, net: nn.Module, opt: torch.optim.Optimizer, param: torch.Tensor, gen: torch.Generator
    ) -> None:
        cfg = self.cfg
        if cfg.net_update == "real":
            self.train_on_real(net, opt, gen, cfg.net_update_samples)
        elif cfg.net_update == "synthetic":
            images = decode(param.detach(), cfg.factor)
            labels = (
                torch.arange(self.data.num_classes, device=self.device)
                .repeat_interleave(self.ipc)
                .repeat(cfg.factor**2)
            )
            for _ in range(cfg.net_update_epochs):
                train_epoch(
                    net,
                    opt,
                    images,
                    labels,
                    batch_size=cfg.net_batch,
                    to_input=self.param_to_input,
                    gen=gen,
                    aug=self.net_aug,
                    cutmix_p=cfg.cutmix_p,
                    autocast_dtype=self.autocast_dtype,
                )

    # --- one matching step ----------------------------------------------------------------------
    def class_batches(
        self, c: int, param: torch.Tensor, gen: torch.Generator, net: nn.Module, mmd: list[float] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Class ``c``'s real and synthetic network inputs for one step (sampled and augmented from ``gen``)."""
        cfg, ipc = self.cfg, self.ipc
        real_idx = to_device(self.sampler.batch_indices(c, self.data), self.device)
        if mmd is not None:  # Fig. 2b diagnostic on the batch actually matched
            whole = self.train_images[self.data.class_indices(c).to(self.device)]
            mmd.append(linear_mmd(net, self.normalize(self.train_images[real_idx]), self.normalize(whole)))
        real = self.normalize(self.train_images[real_idx])
        syn = decode(param[c * ipc : (c + 1) * ipc], cfg.factor)
        if cfg.batch_syn_max and len(syn) > cfg.batch_syn_max:
            syn = syn[to_device(torch.randperm(len(syn), generator=gen)[: cfg.batch_syn_max], self.device)]
        syn = self.param_to_input(syn)
        if self.match_aug is not None:
            real, syn = self.match_aug.siamese(real, syn, gen=gen)
        return real, syn

    def class_loss(
        self, c: int, net: nn.Module, param: torch.Tensor, gen: torch.Generator, mmd: list[float] | None = None
    ):
        real, syn = self.class_batches(c, param, gen, net, mmd)
        label = lambda n: torch.full((n,), c, dtype=torch.long, device=self.device)  # noqa: E731
        with self.arithmetic():
            return matching_loss(net, real, label(len(real)), syn, label(len(syn)), self.cfg.objective)

    def batches_all_classes(self, net: nn.Module) -> bool:
        """Whether this step may push every class through the network at once (same result to float rounding):
        a network whose outputs do not depend on the batch, equal batch sizes across classes (gradient
        objectives, which vmap over classes), and (unless ``batch_classes`` forces it) a GPU, where it saves
        launches; on a CPU, per-class batches stay in cache and run as fast."""
        if (
            self.batch_classes is False
            or not (self.batch_classes or self.device.type == "cuda")
            or batch_dependent(net)
        ):
            return False
        classes = range(self.data.num_classes)
        return (
            self.cfg.objective.gradient_weight == 0
            or len({self.sampler.batch_size(c, self.data) for c in classes}) == 1
        )

    def terms_all_classes(self, net: nn.Module, reals: list[torch.Tensor], syns: list[torch.Tensor]) -> MatchTerms:
        """The summed per-class matching terms of one step, every class at once."""
        objective = self.cfg.objective
        if objective.gradient_weight != 0:
            return matching_loss_all_classes(net, torch.stack(reals), torch.stack(syns), objective)
        with torch.no_grad():  # feature-only (DM): one forward per side, per-class means of its slices
            feat_real = net.embed(torch.cat(reals)).float()
        feat_syn = net.embed(torch.cat(syns)).float()  # float32 even under bf16 autocast
        metric = METRICS[objective.feature_metric]
        terms = [
            metric(fr.mean(0), fs.mean(0))
            for fr, fs in zip(feat_real.split([len(r) for r in reals]), feat_syn.split([len(s) for s in syns]))
        ]
        feature = torch.stack(terms).sum()
        return MatchTerms(objective.feature_weight * feature, torch.zeros((), device=self.device), feature.detach())

    def step_all_classes(
        self,
        net: nn.Module,
        param: torch.Tensor,
        opt_img: torch.optim.Optimizer,
        gen: torch.Generator,
        mmd: list[float] | None,
    ) -> MatchTerms:
        """One image update with all classes in one pass: the same draws in the same order as the per-class
        path and the same per-class terms, summed. IDC's one-step-per-class (``per_class_step``) is applied in
        closed form (:class:`PerClassMomentum`): its gradients are taken where each class's images stand on
        that class's turn."""
        staged = PerClassMomentum(param, opt_img, self.data.num_classes) if self.cfg.per_class_step else None
        point = staged.turn_points().requires_grad_(True) if staged is not None else param
        reals, syns = zip(*(self.class_batches(c, point, gen, net, mmd) for c in range(self.data.num_classes)))
        with self.arithmetic():
            terms = self.terms_all_classes(net, list(reals), list(syns))
        if staged is not None:
            staged.finish(torch.autograd.grad(terms.total, point)[0])
        else:
            opt_img.zero_grad(set_to_none=True)
            terms.total.backward()
            opt_img.step()
        return MatchTerms(terms.total.detach(), terms.gradient, terms.feature)

    def matching_step(
        self,
        net: nn.Module,
        param: torch.Tensor,
        opt_img: torch.optim.Optimizer,
        gen: torch.Generator,
        mmd: list[float] | None = None,
    ) -> dict[str, torch.Tensor]:
        """One image update; the loss terms are summed on the device (read once per network, not per class)."""
        if self.batches_all_classes(net):
            terms = self.step_all_classes(net, param, opt_img, gen, mmd)
            return {"loss": terms.total, "gradient_term": terms.gradient, "feature_term": terms.feature}
        totals = {"loss": 0.0, "gradient_term": 0.0, "feature_term": 0.0}
        if not self.cfg.per_class_step:
            opt_img.zero_grad(set_to_none=True)
        for c in range(self.data.num_classes):
            terms = self.class_loss(c, net, param, gen, mmd)
            if self.cfg.per_class_step:
                opt_img.zero_grad(set_to_none=True)
                terms.total.backward()
                opt_img.step()
            else:
                terms.total.backward()
            totals["loss"] = totals["loss"] + terms.total.detach()
            totals["gradient_term"] = totals["gradient_term"] + terms.gradient
            totals["feature_term"] = totals["feature_term"] + terms.feature
        if not self.cfg.per_class_step:
            opt_img.step()
        return totals

    # --- the loop -------------------------------------------------------------------------------
    def execute(self, eval_every: int | None, evaluate: Evaluator | None, checkpoint: Any, progress) -> DistilledSet:
        cfg = self.cfg
        state = checkpoint.load() if checkpoint is not None else None
        first = 0 if state is None else state["iteration"]
        net0, opt0 = self.network(0) if first == 0 else (None, None)  # a resumed run skips warm-up and init
        if state is None:
            start = time.perf_counter()
            prepare = self.normalize if cfg.cluster_normalized else None
            init = initial_images(cfg.init, self.data, self.ipc, cfg.factor, net0, seeded(self.seed), prepare)
            self.timer.add("init", start)
            init = init if cfg.space == "pixel" else (init - self.mean.cpu()) / self.std.cpu()
        else:
            init = state["param"]
            self.log, self.timer.seconds = state["log"], state["timings"]
            self.sampler.seconds = self.timer.seconds.get("clustering", 0.0)
            self.sampler.embed_seconds = self.timer.seconds.get("clustering_embed", 0.0)
            self.resumed_from = first
        param = init.to(self.device).requires_grad_(True)
        opt_img = torch.optim.SGD([param], lr=cfg.lr_img, momentum=cfg.momentum_img)
        if state is not None:
            opt_img.load_state_dict(state["opt_img"])
        self.record_eval(0, param, eval_every, evaluate, first)
        for it in range(first, cfg.iterations):
            net, opt = (net0, opt0) if it == 0 else self.network(it)
            gen = seeded(derive_seed(self.seed, "iteration", it))
            self.sampler.start_network(net, self.data, gen)
            if cfg.space == "pixel":
                param.data.clamp_(0, 1)
            sums: dict[str, Any] = {}
            for step in range(cfg.steps_per_network):
                self.sampler.refresh(step, net, self.data, self.normalize, self.train_images)
                mmd = [] if cfg.mmd_diagnostic and step % cfg.interval == 0 else None
                t = time.perf_counter()
                for k, v in self.matching_step(net, param, opt_img, gen, mmd).items():
                    sums[k] = sums.get(k, 0.0) + v
                t = self.timer.add("image_update", t)
                if mmd:
                    self.log.append({"iteration": it, "step": step, "mmd": sum(mmd) / len(mmd)})
                if step < cfg.steps_per_network - 1 and opt is not None:
                    self.update_network(net, opt, param, gen)
                    self.timer.add("net_update", t)
            self.timer.seconds["clustering"] = self.sampler.seconds
            if self.sampler.embed_seconds:
                self.timer.seconds["clustering_embed"] = self.sampler.embed_seconds  # part of "clustering"
            losses = {k: float(v) / cfg.steps_per_network for k, v in sums.items()}  # the one host sync of the network
            finite_images = bool(torch.isfinite(param).all())
            if not finite_images or not all(math.isfinite(v) for v in losses.values()):
                raise DivergedError(
                    f"diverged at iteration {it + 1}: non-finite {'loss' if finite_images else 'images'}"
                    f" (lr_img {cfg.lr_img:g}); the cell is failed, not counted"
                )
            self.log.append({"iteration": it + 1, **losses})
            self.record_eval(it + 1, param, eval_every, evaluate, first)
            if checkpoint is not None and checkpoint.due(it + 1):
                checkpoint.save(
                    {
                        "param": param.detach().cpu(),
                        "opt_img": opt_img.state_dict(),
                        "iteration": it + 1,
                        "log": self.log,
                        "timings": self.timer.seconds,
                    }
                )
            if progress is not None:
                progress(it + 1)
        return self.distilled(param)

    def record_eval(
        self, iteration: int, param: torch.Tensor, every: int | None, evaluate: Evaluator | None, first: int
    ) -> None:
        """Accuracy curve point; its cost goes to 'evaluation', never to distillation time."""
        if evaluate is None or not every:
            return
        if iteration % every and iteration != self.cfg.iterations:
            return
        if iteration == 0 and first > 0:
            return
        start = time.perf_counter()
        acc = evaluate(self.distilled(param))
        self.timer.add("evaluation", start)
        self.log.append({"iteration": iteration, "accuracy": acc})
