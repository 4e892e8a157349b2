"""The trainer: one config dataclass, ``fit`` with per-epoch reporting, ``evaluate``, checkpoints.

Every search trial is one call of :func:`fit`, so it is written for speed and honesty:

* the data is fed by :meth:`TensorSplit.batches` -- whole uint8 splits (on the GPU when training on
  CUDA), shuffled, cropped, flipped and normalised in batches; no per-image Python work;
* one device synchronisation every ``finite_check_every`` steps (the non-finite-loss check), so the
  host runs ahead of the GPU;
* ``images_per_second`` is training images divided by the wall time of the training phase of the
  epoch, which holds everything a step costs: drawing, augmenting and moving the batch, forward,
  backward, optimiser and scheduler steps and the loss checks. The validation pass is timed
  apart (``EpochResult.seconds`` covers both); checkpoint writes and callbacks are in neither.

Epoch ``e`` shuffles and augments with a seed derived from ``(config.seed, e)``, so a run resumed
from an epoch-end checkpoint sees the same batches as one that never stopped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from .data import DataBundle, TensorSplit, normalize, random_crop_flip
from .data._cache import _save_atomic
from .data._splits import Split

__all__ = [
    "TrainConfig",
    "EpochResult",
    "FitResult",
    "StepProgress",
    "NonFiniteLossError",
    "fit",
    "evaluate",
    "evaluate_per_image",
    "checkpoint_history",
    "resolve_precision",
    "native_bf16",
]

_CHECKPOINT_FORMAT = 1
#: Seeds are whole numbers in [0, SEED_LIMIT): what ``torch.manual_seed`` accepts.
SEED_LIMIT = 2**64
# Fields that shape the optimisation: a checkpoint resumes only under the same values (and the
# same resolved precision, checked apart).
_RECIPE_FIELDS = (
    "epochs",
    "batch_size",
    "lr",
    "lr_schedule",
    "warmup_fraction",
    "momentum",
    "nesterov",
    "weight_decay",
    "units",
    "label_smoothing",
    "flip",
    "ema_decay",
    "ema_every",
    "ema_start",
    "lookahead_decay",
    "lookahead_every",
    "lookahead_start",
    "bn_momentum",
    "bn_weight",
    "bias_lr_scale",
    "seed",
)
#: The recipe options added with issue 17, at the values that repeat a run recorded before they
#: existed (an export's ``training`` record without them trained with exactly these).
RECIPE_OPTIONS_BEFORE_ISSUE_17: dict[str, Any] = {
    "units": "batch",
    "flip": "random",
    "ema_decay": 0.0,
    "lookahead_decay": 0.0,
    "bn_momentum": None,
    "bn_weight": True,
    "bias_lr_scale": 1.0,
}
_PRECISIONS = ("auto", "bf16", "fp32")
# CPU features (names as torch.cpu.get_capabilities() reports them) that compute bfloat16 in
# hardware: AVX512-BF16 and AMX-BF16 on x86, BF16 (Armv8.6) and SVE-BF16 on ARM. Without one of
# them bf16 is emulated and slower than float32.
_NATIVE_BF16_CPU_FEATURES = ("avx512_bf16", "amx_bf16", "bf16", "sve_bf16")
# The triangular schedule's lr factor at the first and last step (airbench94: triangle(start=0.2,
# end=0.07, peak=0.23), KellerJordan/cifar10-airbench airbench94.py at 01a2367).
_TRIANGLE_START, _TRIANGLE_END = 0.2, 0.07


@dataclass(frozen=True)
class TrainConfig:
    """Every knob of a training run, in one place.

    The defaults are the recipe the search uses: SGD with Nesterov momentum at peak lr 0.2 and
    weight decay 5e-4 (at batch 128 airbench94's 17.6 and 0.0088 per 1,024 examples, to rounding; at the
    CPU profile's lr 0.1 and batch 64 too), airbench94's triangular schedule (0.2 lr -> lr at 23 %
    of the steps -> 0.07 lr), label smoothing 0.2, alternating flips on CIFAR-sized data, BatchNorm
    momentum 0.4, channels_last everywhere (measured on the 2-core CPU: NIN trains ~1.65x faster
    in channels_last than NCHW), and bf16 autocast where the device computes it
    natively (CUDA cards from Ampere on; CPUs with AVX512-BF16 or AMX-BF16, as the precision table
    below allows: bf16 - fp32 within 2 s.e. on both networks).

    Issue 17 chose them. Before it the recipe was one-cycle (lr/10 -> lr at 15 % -> lr/1000),
    label smoothing 0.1, random flips, PyTorch's BatchNorm momentum 0.1 ("today" below). Each
    component of the fastest CIFAR-10 trainers (airbench94, hlb-CIFAR10) was screened alone against
    it; those better on both screen seeds were kept (EMA, lookahead, BatchNorm without weight and a
    64x BatchNorm-bias lr hurt, and stay off), and the kept set was confirmed against it. NIN on
    real CIFAR-10, validation accuracy in %, mean ± s.d. over seeds; diff = variant - baseline
    paired by seed (same initialisation and data order), with 2 s.e. of that difference.
    ``experiments/recipe.py`` ran them on the shared 2-core CPU (one thread, bf16 unless the row
    says otherwise); ``experiments/results/recipe.md`` holds every run.

    Screen: each component alone, root-8, 2 epochs on 10,000 images (5,000 validation), batch 128::

        schedule variant                 n     val acc %    diff  2 s.e.
        root-8   today                   2  55.16 ± 0.59       –       –
        root-8   label_smoothing_0.2     2  55.75 ± 0.81   +0.59    0.30
        root-8   ema                     2  53.01 ± 0.83   -2.15    2.02
        root-8   lookahead               2  53.09 ± 1.88   -2.07    3.50
        root-8   alternating_flip        2  55.49 ± 0.72   +0.33    0.18
        root-8   triangular_per_1024     2  55.74 ± 0.20   +0.58    0.56
        root-8   bn_momentum_0.4         2  55.44 ± 0.23   +0.28    0.52
        root-8   bn_no_weight            2  54.14 ± 0.28   -1.02    0.44
        root-8   bn_bias_lr_64           2  50.60 ± 6.31   -4.56    8.08

    Confirmation: the kept set, 2 epochs on 10,000 images (5,000 validation), batch 128::

        schedule variant                 n     val acc %    diff  2 s.e.
        orig     today                   3  55.98 ± 1.10       –       –
        orig     kept                    3  56.89 ± 0.91   +0.91    2.20
        root-8   today                   3  55.13 ± 0.42       –       –
        root-8   kept                    3  55.74 ± 0.53   +0.61    0.45

    CPU-sized search budget (spaces/nin.yaml, profile cpu): 2 epochs on 3,000 images (1,000
    validation), batch 64; today = lr 0.1 as the space sets it, kept = lr 0.1 per step here too::

        schedule variant                 n     val acc %    diff  2 s.e.
        orig     today                   3  43.53 ± 0.46       –       –
        orig     kept                    3  44.47 ± 1.33   +0.93    1.39
        root-8   today                   3  42.23 ± 1.01       –       –
        root-8   kept                    3  43.07 ± 0.71   +0.83    1.84

    Precision: bf16 autocast vs float32, today's recipe, 2 epochs on 10,000 images, batch 128::

        schedule variant                 n     val acc %    diff  2 s.e.
        orig     fp32                    3  56.39 ± 0.29       –       –
        orig     bf16                    3  55.98 ± 1.10   -0.41    0.96
        root-8   fp32                    5  54.94 ± 0.77       –       –
        root-8   bf16                    5  54.94 ± 0.47   -0.00    0.57

    Longer budget, 6 epochs on 10,000 images, 2 seeds::

        schedule variant                 n     val acc %    diff  2 s.e.
        orig     today                   2  71.49 ± 0.10       –       –
        orig     kept                    2  71.04 ± 0.25   -0.45    0.22
        root-8   today                   2  69.98 ± 0.40       –       –
        root-8   kept                    2  70.25 ± 0.55   +0.27    0.22

    At 6 epochs the kept set costs orig 0.45 points and gains root-8 0.27: it is no free gain at
    longer budgets (two seeds). Not measured: a GPU budget (no GPU was available).

    Example:
        >>> from deeproots import TrainConfig
        >>> TrainConfig(epochs=30, lr_schedule="cosine").batch_size
        128
    """

    epochs: int = 10  # passes over the training split
    batch_size: int = 128  # images per optimiser step
    lr: float = 0.2  # peak learning rate, reached after warm-up; its unit is set by `units`
    lr_schedule: Literal["onecycle", "cosine", "triangular"] = "triangular"  # onecycle: linear up
    # from lr/10, linear down to lr/1000; cosine: linear warm-up, then half a cosine down to 0;
    # triangular (airbench94): linear from 0.2 lr up to lr, then linear down to 0.07 lr. All
    # three stepped every batch, peaking at `warmup_fraction` of all steps.
    warmup_fraction: float = 0.23  # fraction of all steps spent warming up to `lr` (airbench94)
    momentum: float = 0.9  # SGD momentum (dimensionless)
    nesterov: bool = True  # Nesterov momentum
    weight_decay: float = 5e-4  # on conv/linear weights (not biases, not BatchNorm); unit: `units`
    units: Literal["batch", "1024"] = "batch"  # what `lr` and `weight_decay` mean.
    # "batch": `lr` is the SGD step size on the batch-mean loss and `weight_decay` the L2
    # coefficient (PyTorch's own meaning; both independent of `batch_size`).
    # "1024" (airbench94's decoupled form): `lr` is the learning rate per 1,024 examples and
    # `weight_decay` the decay per 1,024 examples, so `batch_size` and `momentum` can change
    # without re-tuning either: SGD gets lr * batch_size / K on the batch-mean loss and an L2
    # coefficient of weight_decay / lr, with K = 1024 * (1 + 1 / (1 - momentum)).
    # Today's lr 0.2 / weight decay 5e-4 at batch 128, momentum 0.9 are 17.6 / 0.0088 in "1024".
    label_smoothing: float = 0.2  # probability mass spread over all classes in the training loss
    # (airbench94, hlb-CIFAR10; 0.1 before issue 17)
    precision: Literal["auto", "bf16", "fp32"] = "auto"  # autocast of forward + loss (weights,
    # optimiser and BatchNorm statistics stay float32). "auto": bfloat16 on CUDA devices that
    # support it and on CPUs that compute it natively (see `resolve_precision`), else float32.
    flip: Literal["random", "alternating", "auto"] = "auto"  # horizontal flips of training
    # images (when the split flips at all): "random" flips each image with probability 1/2 every
    # epoch; "alternating" (airbench94's derandomised flip) draws each image's flip once (from
    # `seed`) for epoch 1 and flips every image the other way than the epoch before -- TensorSplit
    # data only; "auto": alternating on a TensorSplit (CIFAR), random on a FolderSplit (ImageNet).
    ema_decay: float = 0.0  # exponential moving average of the weights and BatchNorm statistics
    # (hlb-CIFAR10's NetworkEMA; 0.987 there): decay per optimiser step, applied as
    # ema_decay ** ema_every every `ema_every` steps; 0 turns it off. Validation (and the final
    # weights `fit` leaves in the model) use the average once it has started.
    ema_every: int = 2  # optimiser steps between EMA updates (hlb-CIFAR10: 2)
    ema_start: float = 0.7  # fraction of all steps before the EMA starts from the current
    # weights (hlb-CIFAR10: the last 3 of 10 epochs)
    lookahead_decay: float = 0.0  # airbench94's lookahead: every `lookahead_every` steps the slow
    # weights (and BatchNorm statistics) move towards the trained ones with decay
    # lookahead_decay ** lookahead_every * (step / total_steps) ** 3 and the trained weights are
    # reset to them, and again at every epoch's end; per-step decay, 0 turns it off (0.95 there).
    lookahead_every: int = 5  # optimiser steps between lookahead updates (airbench94: 5)
    lookahead_start: float = 0.3  # fraction of all steps before the slow weights start
    # (airbench94: epoch 3 of 9.9)
    bn_momentum: float | None = 0.4  # BatchNorm running-statistics momentum in PyTorch's
    # convention (weight of the new batch; 0.1 is PyTorch's default); None keeps the model's own.
    # airbench94 and hlb-CIFAR10 use 0.4 (airbench writes it as 0.6 = 1 - 0.4).
    bn_weight: bool = True  # train BatchNorm's affine weight; False fixes it at 1 (airbench94,
    # hlb-CIFAR10: BatchNorm(weight=False)). `fit` sets it on the model in place.
    bias_lr_scale: float = 1.0  # learning-rate multiplier for BatchNorm biases (airbench94's
    # bias_scaler, 64; they take no weight decay here, so decay is unaffected)
    memory_format: Literal["channels_last", "contiguous"] = "channels_last"  # model + batch layout
    device: str = "auto"  # "auto" (CUDA when available, else CPU), "cpu", "cuda", "cuda:1", ...
    seed: int = 0  # seed of data order and augmentation (model init is the caller's business)
    threads: int | None = None  # CPU intra-op threads during the run; None keeps PyTorch's choice
    eval_batch_size: int = 500  # images per batch when evaluating
    finite_check_every: int | None = None  # steps between loss checks (each one device sync);
    # None: every step on CPU (free there), every 20 steps on CUDA. The failing step is exact.
    gpu_resident: bool = True  # on CUDA, move tensor splits to GPU memory once (CIFAR: 180 MB)

    def __post_init__(self) -> None:
        def need(ok: bool, name: str, what: str) -> None:
            if not ok:
                raise ValueError(f"TrainConfig.{name} must be {what}, got {getattr(self, name)!r}")

        def is_int(v: Any) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        def is_num(v: Any) -> bool:
            return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

        for f in dataclasses.fields(self):  # every bool field alike: a real bool, not 'no' or 0
            if f.type in ("bool", bool):
                need(isinstance(getattr(self, f.name), bool), f.name, "True or False")
        need(is_int(self.epochs) and self.epochs >= 1, "epochs", "an integer >= 1")
        need(is_int(self.batch_size) and self.batch_size >= 1, "batch_size", "an integer >= 1")
        need(is_num(self.lr) and self.lr > 0, "lr", "a positive number")
        need(
            self.lr_schedule in ("onecycle", "cosine", "triangular"),
            "lr_schedule",
            "'onecycle', 'cosine' or 'triangular'",
        )
        need(
            is_num(self.warmup_fraction) and 0 <= self.warmup_fraction < 1,
            "warmup_fraction",
            "in [0, 1)",
        )
        need(is_num(self.momentum) and 0 <= self.momentum < 1, "momentum", "in [0, 1)")
        need(not self.nesterov or self.momentum > 0, "momentum", "> 0 with nesterov=True")
        need(is_num(self.weight_decay) and self.weight_decay >= 0, "weight_decay", ">= 0")
        need(
            is_num(self.label_smoothing) and 0 <= self.label_smoothing < 1,
            "label_smoothing",
            "in [0, 1)",
        )
        need(self.units in ("batch", "1024"), "units", "'batch' or '1024'")
        need(self.precision in _PRECISIONS, "precision", "'auto', 'bf16' or 'fp32'")
        need(self.flip in ("random", "alternating", "auto"), "flip", "'random', 'alternating' or 'auto'")
        for name in ("ema", "lookahead"):
            need(
                is_num(getattr(self, f"{name}_decay")) and 0 <= getattr(self, f"{name}_decay") < 1,
                f"{name}_decay",
                "in [0, 1) (0: off)",
            )
            need(
                is_int(getattr(self, f"{name}_every")) and getattr(self, f"{name}_every") >= 1,
                f"{name}_every",
                "an integer >= 1",
            )
            need(
                is_num(getattr(self, f"{name}_start")) and 0 <= getattr(self, f"{name}_start") < 1,
                f"{name}_start",
                "in [0, 1)",
            )
        need(
            not (self.ema_decay > 0 and self.lookahead_decay > 0),
            "lookahead_decay",
            "0 when ema_decay > 0 (one weight average at a time)",
        )
        need(
            self.bn_momentum is None or (is_num(self.bn_momentum) and 0 < self.bn_momentum <= 1),
            "bn_momentum",
            "None or in (0, 1]",
        )
        need(is_num(self.bias_lr_scale) and self.bias_lr_scale > 0, "bias_lr_scale", "> 0")
        need(
            self.memory_format in ("channels_last", "contiguous"),
            "memory_format",
            "'channels_last' or 'contiguous'",
        )
        need(is_int(self.seed) and 0 <= self.seed < SEED_LIMIT, "seed", "an integer in [0, 2**64) (torch's seed range)")
        need(
            self.threads is None or (is_int(self.threads) and self.threads >= 1),
            "threads",
            "None or an integer >= 1",
        )
        need(
            is_int(self.eval_batch_size) and self.eval_batch_size >= 1,
            "eval_batch_size",
            "an integer >= 1",
        )
        need(
            self.finite_check_every is None
            or (is_int(self.finite_check_every) and self.finite_check_every >= 1),
            "finite_check_every",
            "None or an integer >= 1",
        )
        need(isinstance(self.device, str), "device", "'auto' or a torch device such as 'cpu' or 'cuda:0'")
        if self.device != "auto":
            try:
                torch.device(self.device)
            except RuntimeError:
                need(False, "device", "'auto' or a torch device such as 'cpu' or 'cuda:0'")

    def to_dict(self) -> dict[str, Any]:
        """The config as plain values (JSON, YAML, checkpoints)."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class EpochResult:
    """What one epoch produced; passed to ``on_epoch`` and kept in :attr:`FitResult.history`.

    Attributes:
        epoch: 1-based epoch number.
        train_loss: mean training loss of the epoch (with label smoothing, as optimised).
        val_loss: mean cross-entropy on the validation split (no smoothing); nan without one.
        val_accuracy: top-1 accuracy on the validation split, in [0, 1]; nan without one.
        images_per_second: training images / ``train_seconds``.
        seconds: wall time of the epoch: training phase plus validation pass.
        train_seconds: wall time of the training phase (see the module docstring).
        images: training images processed in the epoch.
        precision: the resolved autocast precision the epoch ran in, ``"bf16"`` or ``"fp32"``.
        averaged: the validation figures are those of the weight average (``ema_decay``) rather
            than of the trained weights (lookahead resets the trained weights, so it never is).
    """

    epoch: int
    train_loss: float
    val_loss: float
    val_accuracy: float
    images_per_second: float
    seconds: float
    train_seconds: float = 0.0
    images: int = 0
    precision: str = "fp32"
    averaged: bool = False


@dataclass(frozen=True)
class FitResult:
    """The outcome of :func:`fit`.

    Attributes:
        history: one :class:`EpochResult` per epoch (those of a resumed run included).
        val_accuracy: the final epoch's validation accuracy -- the figure a search optimises.
        images_per_second: training throughput over all epochs of ``history``.
        device: the device trained on, e.g. ``"cpu"`` or ``"cuda:0"``.
        precision: the resolved precision, ``"bf16"`` or ``"fp32"`` -- what
            ``TrainConfig(precision=...)`` needs to repeat the run exactly on another machine.
        resumed_from: the epoch the checkpoint held when training resumed, 0 for a fresh run.
    """

    history: list[EpochResult]
    val_accuracy: float
    images_per_second: float
    device: str
    precision: str
    resumed_from: int = 0

    @property
    def val_loss(self) -> float:
        """The final epoch's validation loss."""
        return self.history[-1].val_loss if self.history else math.nan


@dataclass(frozen=True)
class StepProgress:
    """Live progress, passed to ``on_step`` after every optimiser step.

    Attributes:
        epoch: 1-based epoch.
        step: 1-based step within the epoch.
        steps: steps per epoch.
        loss: mean training loss of the epoch up to the last check (nan before the first).
        images_per_second: training throughput of the epoch so far.
    """

    epoch: int
    step: int
    steps: int
    loss: float
    images_per_second: float


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite.

    Attributes:
        step: 1-based global optimiser step (over all epochs) whose loss was not finite.
        loss: that loss value.
        epoch: 1-based epoch of that step.
    """

    def __init__(self, step: int, loss: float, epoch: int | None = None) -> None:
        self.step, self.loss, self.epoch = step, loss, epoch
        where = f" (epoch {epoch})" if epoch is not None else ""
        super().__init__(
            f"training loss is {loss} at step {step}{where}; lower the learning rate or check "
            "the model and data"
        )

    def __reduce__(self) -> tuple[Any, ...]:  # picklable across processes (Ray workers)
        return (type(self), (self.step, self.loss, self.epoch))


def _resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"TrainConfig.device is {name!r} but CUDA is not available")
    return device


def _memory_format(config: TrainConfig) -> torch.memory_format:
    return torch.channels_last if config.memory_format == "channels_last" else torch.contiguous_format


@contextlib.contextmanager
def _run_settings(config: TrainConfig, device: torch.device) -> Iterator[None]:
    """Apply thread count and cuDNN autotuning for the run; restore them afterwards."""
    threads = torch.get_num_threads()
    benchmark = torch.backends.cudnn.benchmark
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed batch shapes: let cuDNN pick its kernels
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.backends.cudnn.benchmark = benchmark


def native_bf16(device: torch.device | str = "cpu") -> bool:
    """Whether ``device`` computes bfloat16 in hardware (so bf16 autocast is worth it there).

    A CPU does when ``torch.cpu.get_capabilities()`` reports ``avx512_bf16`` or ``amx_bf16``
    (x86) or ``bf16`` or ``sve_bf16`` (ARM); a CUDA device when ``torch.cuda.is_bf16_supported``
    says so without emulation (Ampere and later). Other devices: False.

    Example:
        >>> from deeproots import native_bf16
        >>> native_bf16("cpu") in (True, False)
        True
    """
    return _native_bf16(torch.device(device))


@functools.lru_cache(maxsize=None)
def _native_bf16(device: torch.device) -> bool:  # asked once per step: cache the answer
    if device.type == "cuda":
        if not torch.cuda.is_available():
            return False
        with torch.cuda.device(device):
            try:
                return torch.cuda.is_bf16_supported(including_emulation=False)
            except TypeError:  # torch < 2.3 has no emulation switch (and no emulation)
                return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        capabilities = torch.cpu.get_capabilities()
        return any(bool(capabilities.get(f)) for f in _NATIVE_BF16_CPU_FEATURES)
    return False


def resolve_precision(precision: str = "auto", device: torch.device | str = "auto") -> str:
    """The precision a run with ``TrainConfig(precision=precision, device=device)`` trains in.

    Resolve once where a run's identity is fixed (a search study, an exported config) and store
    the result: it is ``"bf16"`` or ``"fp32"``, itself a valid ``TrainConfig.precision``, so a run
    resumed or repeated elsewhere keeps it instead of re-deciding from that machine's hardware.

    Args:
        precision: ``"auto"`` (bfloat16 autocast where :func:`native_bf16` holds for the device,
            else float32), ``"bf16"`` or ``"fp32"`` (returned as they are).
        device: ``"auto"`` (CUDA when available, else CPU) or a torch device.

    Returns:
        ``"bf16"`` or ``"fp32"``.

    Raises:
        ValueError: an unknown precision, or a CUDA device without CUDA.

    Example:
        >>> from deeproots import TrainConfig, resolve_precision
        >>> resolve_precision("fp32", "cpu")
        'fp32'
        >>> config = TrainConfig(precision=resolve_precision("auto", "cpu"))  # stored by a search
        >>> config.precision in ("bf16", "fp32")
        True
    """
    if precision not in _PRECISIONS:
        raise ValueError(f"precision must be 'auto', 'bf16' or 'fp32', got {precision!r}")
    if precision != "auto":
        return precision
    return "bf16" if native_bf16(_resolve_device(str(device))) else "fp32"


def _autocast(config: TrainConfig, device: torch.device) -> contextlib.AbstractContextManager:
    if resolve_precision(config.precision, device) == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _epoch_seed(seed: int, epoch: int) -> int:
    # Modulo 2**64 (torch's seed range): the same value as before for every seed it fitted, and
    # every TrainConfig.seed (< 2**64) gives a valid one.
    return (seed * 1_000_003 + epoch) % SEED_LIMIT


_BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def _apply_batchnorm_settings(model: nn.Module, config: TrainConfig) -> None:
    """``bn_momentum`` and ``bn_weight`` on every BatchNorm layer of ``model``, in place."""
    for m in model.modules():
        if not isinstance(m, _BATCHNORMS):
            continue
        if config.bn_momentum is not None:
            m.momentum = config.bn_momentum
        if not config.bn_weight and m.weight is not None:
            with torch.no_grad():
                m.weight.fill_(1.0)
            m.weight.requires_grad_(False)


def _sgd_hyperparameters(config: TrainConfig) -> tuple[float, float]:
    """Peak step size on the batch-mean loss and L2 coefficient, as ``torch.optim.SGD`` takes them.

    With ``units="1024"`` these follow airbench94 (KellerJordan/cifar10-airbench, airbench94.py
    at 01a2367): with K = 1024 * (1 + 1 / (1 - momentum)), the step size on the *summed* loss is
    lr / K (here batch_size times that, as the loss is the batch mean), and the weight decay
    applied per step at peak lr is weight_decay * batch_size / K, which SGD gets as the
    coefficient weight_decay / lr (SGD multiplies it by the scheduled step size).
    """
    if config.units == "batch":
        return config.lr, config.weight_decay
    k = 1024 * (1 + 1 / (1 - config.momentum))
    return config.lr * config.batch_size / k, config.weight_decay / config.lr


def _optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.SGD:
    lr, weight_decay = _sgd_hyperparameters(config)
    bn_biases = {
        id(m.bias)
        for m in model.modules()
        if isinstance(m, _BATCHNORMS) and m.bias is not None and config.bias_lr_scale != 1.0
    }
    decay, no_decay, scaled = [], [], []
    for p in model.parameters():
        if p.requires_grad:
            if id(p) in bn_biases:
                scaled.append(p)
            else:
                (decay if p.dim() > 1 else no_decay).append(p)  # biases and BN params have dim 1
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if scaled:  # a third group only when used: checkpoints of the default recipe stay as they were
        groups.append({"params": scaled, "weight_decay": 0.0, "lr": lr * config.bias_lr_scale})
    return torch.optim.SGD(groups, lr=lr, momentum=config.momentum, nesterov=config.nesterov)


def _warmup_cosine(total: int, warmup: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))

    return factor


def _triangle(total: int, peak: int) -> Callable[[int], float]:
    """airbench94's ``triangle``: linear from 0.2 at step 0 to 1 at ``peak``, to 0.07 at ``total``."""

    def factor(step: int) -> float:
        if step < peak:
            return _TRIANGLE_START + (1 - _TRIANGLE_START) * step / peak
        return 1 + (_TRIANGLE_END - 1) * (step - peak) / max(1, total - peak)

    return factor


def _scheduler(
    optimizer: torch.optim.Optimizer, config: TrainConfig, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    if config.lr_schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=[g["lr"] for g in optimizer.param_groups],  # per group (bias_lr_scale)
            total_steps=total_steps,
            pct_start=max(config.warmup_fraction, 1e-6),
            anneal_strategy="linear",
            cycle_momentum=False,  # keep `momentum` what the config says
            div_factor=10.0,  # start at lr / 10
            final_div_factor=100.0,  # end at lr / 1000
        )
    warmup = round(config.warmup_fraction * total_steps)
    if config.lr_schedule == "triangular":
        factor = _triangle(total_steps, warmup)
    else:
        factor = _warmup_cosine(total_steps, warmup)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _alternating_flip_batches(
    split: TensorSplit,
    batch_size: int,
    seed: int,
    epoch: int,
    device: torch.device,
    memory_format: torch.memory_format,
) -> Iterator[tuple[Tensor, Tensor]]:
    """:meth:`TensorSplit.batches` (``train=True``) with airbench94's alternating flip.

    Shuffle and crop are drawn as there, from the epoch's seed; image ``i`` is flipped in epoch 1
    when a draw made once from ``seed`` says so, and in every later epoch exactly when it was not
    flipped in the epoch before (KellerJordan/cifar10-airbench, airbench94.py at 01a2367:
    ``CifarLoader`` flips all pre-flipped images every other epoch). Every image is thus seen both
    ways within any two consecutive epochs, which random flips only do half the time.
    """
    n, home = len(split), split.device
    gen = torch.Generator(device=home).manual_seed(_epoch_seed(seed, epoch))
    order = torch.randperm(n, device=home, generator=gen)
    first = torch.Generator(device=home).manual_seed(_epoch_seed(seed, 0))  # no epoch is 0
    flips = torch.randint(0, 2, (n,), device=home, generator=first).bool()
    if epoch % 2 == 0:
        flips = ~flips
    for i in range(split.num_batches(batch_size, train=True)):
        idx = order[i * batch_size : (i + 1) * batch_size]
        images, labels = split.images[idx], split.labels[idx]
        images = random_crop_flip(images, padding=split.padding, flip=False, generator=gen)
        if split.flip:
            images = torch.where(flips[idx].view(-1, 1, 1, 1), images.flip(-1), images)
        if images.device != device:  # uint8 over the bus, as TensorSplit.batches does
            images = images.to(device, non_blocking=True)
            labels = labels.to(device, non_blocking=True)
        yield normalize(images, split.mean, split.std, memory_format=memory_format), labels


def _alternates(config: TrainConfig, train: Split) -> bool:
    """Whether the run flips alternately (``flip`` "alternating", or "auto" on a TensorSplit)."""
    return config.flip == "alternating" or (config.flip == "auto" and isinstance(train, TensorSplit))


def _train_batches(
    train: Split,
    config: TrainConfig,
    epoch: int,
    device: torch.device,
    memory_format: torch.memory_format,
) -> Iterator[tuple[Tensor, Tensor]]:
    """The epoch's training batches: seeded by ``(config.seed, epoch)``, so a resumed run replays them."""
    if _alternates(config, train):
        assert isinstance(train, TensorSplit)  # checked by fit
        return _alternating_flip_batches(
            train, config.batch_size, config.seed, epoch, device, memory_format
        )
    return train.batches(
        config.batch_size,
        train=True,
        device=device,
        seed=_epoch_seed(config.seed, epoch),
        memory_format=memory_format,
    )


def _ema_update(decay: float) -> Callable[[list[Tensor], list[Tensor], Tensor], None]:
    """``multi_avg_fn`` for ``AveragedModel``: lerp float tensors, copy integer ones (BatchNorm's
    ``num_batches_tracked``, which a weighted average would truncate)."""

    @torch.no_grad()
    def update(averaged: list[Tensor], current: list[Tensor], _: Tensor) -> None:
        for a, c in zip(averaged, current):
            if a.is_floating_point():
                a.lerp_(c, 1 - decay)
            else:
                a.copy_(c)

    return update


class _EMA:
    """hlb-CIFAR10's ``NetworkEMA`` (tysam-code/hlb-CIFAR10, main.py at 01603a8): an exponential
    moving average of the weights and BatchNorm statistics, updated every ``ema_every`` steps with
    decay ``ema_decay ** ema_every`` once ``ema_start`` of the steps are done, started from the
    weights of that moment. Held by ``torch.optim.swa_utils.AveragedModel`` (``use_buffers=True``);
    validation uses it, and the last epoch leaves it in the model."""

    def __init__(self, model: nn.Module, config: TrainConfig, total_steps: int) -> None:
        from torch.optim.swa_utils import AveragedModel

        self.every, self.start = config.ema_every, config.ema_start * total_steps
        decay = config.ema_decay**config.ema_every
        self.average = AveragedModel(model, multi_avg_fn=_ema_update(decay), use_buffers=True)
        self.started = False

    def after_step(self, model: nn.Module, step: int) -> None:
        if step > self.start and step % self.every == 0:
            self.average.update_parameters(model)
            self.started = True

    def end_epoch(self, model: nn.Module, last: bool) -> None:
        if last and self.started:
            model.load_state_dict(self.average.module.state_dict())

    def evaluated(self, model: nn.Module) -> nn.Module:
        return self.average.module if self.started else model

    def state_dict(self) -> dict[str, Any]:
        return {"average": self.average.state_dict(), "started": self.started}

    def load_state_dict(self, state: dict[str, Any], device: torch.device) -> None:
        self.average.load_state_dict(state["average"])
        self.started = bool(state["started"])


class _Lookahead:
    """airbench94's ``LookaheadState`` (KellerJordan/cifar10-airbench, airbench94.py at 01a2367):
    once ``lookahead_start`` of the steps are done, slow copies of the float weights and BatchNorm
    statistics start from the trained ones; every ``lookahead_every`` steps after that they move
    towards them with decay ``lookahead_decay ** lookahead_every * (step / total) ** 3`` and the
    trained weights are reset to them, and at each epoch's end the trained weights become the slow
    ones (decay 1)."""

    def __init__(self, config: TrainConfig, total_steps: int) -> None:
        self.every, self.start, self.total = (
            config.lookahead_every,
            config.lookahead_start * total_steps,
            total_steps,
        )
        self.base = config.lookahead_decay**config.lookahead_every
        self.slow: dict[str, Tensor] | None = None

    @torch.no_grad()
    def _update(self, model: nn.Module, decay: float) -> None:
        assert self.slow is not None
        state = model.state_dict()
        for name, slow in self.slow.items():
            slow.lerp_(state[name], 1 - decay)
            state[name].copy_(slow)

    def after_step(self, model: nn.Module, step: int) -> None:
        if step > self.start and step % self.every == 0:
            if self.slow is None:
                self.slow = {
                    k: v.detach().clone() for k, v in model.state_dict().items() if v.is_floating_point()
                }
            else:
                self._update(model, self.base * (step / self.total) ** 3)

    def end_epoch(self, model: nn.Module, last: bool) -> None:
        if self.slow is not None:
            self._update(model, 1.0)

    def evaluated(self, model: nn.Module) -> nn.Module:
        return model

    def state_dict(self) -> dict[str, Any]:
        return {"slow": self.slow}

    def load_state_dict(self, state: dict[str, Any], device: torch.device) -> None:
        slow = state["slow"]
        self.slow = None if slow is None else {k: v.to(device) for k, v in slow.items()}


def _model_memory_format(model: nn.Module) -> torch.memory_format:
    for p in model.parameters():
        if p.dim() == 4:
            channels_last = p.is_contiguous(memory_format=torch.channels_last)
            return torch.channels_last if channels_last else torch.contiguous_format
    return torch.contiguous_format


def _evaluation_pass(
    model: nn.Module, split: Split, config: TrainConfig, device: torch.device, per_image: bool
) -> tuple[float, int, Tensor | None]:
    """One pass over ``split`` in order: (summed cross-entropy, images right, per-image bools or None)."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    right: list[Tensor] = []
    try:
        with _run_settings(config, device), torch.inference_mode(), _autocast(config, device):
            batches = split.batches(
                config.eval_batch_size, device=device, memory_format=_model_memory_format(model)
            )
            for images, labels in batches:
                logits = model(images).float()
                loss_sum += nn.functional.cross_entropy(logits, labels, reduction="sum")
                hits = logits.argmax(1) == labels  # B bools, in the split's order
                correct += hits.sum()
                if per_image:
                    right.append(hits)
    finally:
        model.train(was_training)
    flags = torch.cat(right).cpu() if per_image else None
    return loss_sum.item(), int(correct.item()), flags


def _eval_device(model: nn.Module, device: torch.device | str | None) -> torch.device:
    if device is None:
        first = next(model.parameters(), None)
        device = first.device if first is not None else torch.device("cpu")
    return torch.device(device)


def evaluate(
    model: nn.Module,
    split: Split,
    config: TrainConfig | None = None,
    *,
    device: torch.device | str | None = None,
) -> tuple[float, float]:
    """Mean cross-entropy and top-1 accuracy of ``model`` on ``split`` (no augmentation).

    The model is put in eval mode for the pass and given back in the mode it was in.

    Args:
        model: the network; it stays where it is (``device`` defaults to its parameters' device).
        split: e.g. ``data.val`` or ``data.test``.
        config: supplies ``eval_batch_size``, ``precision`` (resolved for ``device``) and ``threads``;
            defaults otherwise.
        device: where to evaluate; the model must already be there.

    Returns:
        ``(loss, accuracy)`` with accuracy in [0, 1]; ``(nan, nan)`` for an empty split.
        :func:`evaluate_per_image` says which images were right.

    Example:
        >>> import torch
        >>> from deeproots import evaluate, load_data
        >>> data = load_data("synthetic", num_train=100, num_test=40, val_size=20)
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10))
        >>> loss, accuracy = evaluate(net, data.test)
        >>> 0.0 <= accuracy <= 1.0
        True
    """
    config = config or TrainConfig()
    device = _eval_device(model, device)
    if len(split) == 0:
        return math.nan, math.nan
    loss_sum, correct, _ = _evaluation_pass(model, split, config, device, per_image=False)
    n = len(split)
    return loss_sum / n, correct / n


def evaluate_per_image(
    model: nn.Module,
    split: Split,
    config: TrainConfig | None = None,
    *,
    device: torch.device | str | None = None,
) -> tuple[float, Tensor]:
    """Like :func:`evaluate`, but says *which* images ``model`` classifies right (top-1).

    Two models scored on the same split can then be compared image by image (a paired test such
    as McNemar's needs the images one got right and the other wrong; ``search.mcnemar``), and
    the share of True flags is exactly :func:`evaluate`'s accuracy. Store the flags compactly
    with :func:`deeproots.pack_correct` (one bit per image).

    Args:
        model: the network; it stays where it is (``device`` defaults to its parameters' device).
        split: e.g. ``data.val``; read in its own order, unaugmented.
        config: as for :func:`evaluate`.
        device: where to evaluate; the model must already be there.

    Returns:
        ``(loss, correct)``: mean cross-entropy (nan for an empty split) and a CPU ``bool`` tensor of
        ``len(split)`` flags in split order, True where the arg-max class is the label.

    Example:
        >>> import torch
        >>> from deeproots import evaluate_per_image, load_data
        >>> data = load_data("synthetic", num_train=100, num_test=40, val_size=20)
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10))
        >>> loss, correct = evaluate_per_image(net, data.val)
        >>> correct.shape, correct.dtype
        (torch.Size([20]), torch.bool)
    """
    config = config or TrainConfig()
    device = _eval_device(model, device)
    if len(split) == 0:
        return math.nan, torch.zeros(0, dtype=torch.bool)
    loss_sum, _, flags = _evaluation_pass(model, split, config, device, per_image=True)
    return loss_sum / len(split), flags  # type: ignore[return-value]


def _read_checkpoint(path: Path) -> dict[str, Any]:
    """The state dict an epoch-end checkpoint holds; a one-line ValueError when it cannot be read."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except IsADirectoryError:
        raise ValueError(f"checkpoint {str(path)!r} is a folder; give a file path such as {str(path / 'run.pt')!r}") from None
    except PermissionError as exc:
        raise ValueError(f"cannot read checkpoint {str(path)!r}: {exc.strerror}") from None
    except Exception as exc:  # noqa: BLE001 -- pickle, zip and EOF errors of a damaged file all mean the same
        raise ValueError(
            f"cannot read checkpoint {str(path)!r}: damaged or not a torch file ({type(exc).__name__}); "
            "delete it or drop --resume to start afresh"
        ) from None
    keys = ("format", "epoch", "steps_per_epoch", "model", "optimizer", "scheduler", "history", "config")
    if not isinstance(state, dict) or state.get("format") != _CHECKPOINT_FORMAT or not all(k in state for k in keys):
        raise ValueError(
            f"{str(path)!r} is not a deeproots checkpoint (format {_CHECKPOINT_FORMAT}); "
            "delete it or drop --resume to start afresh"
        )
    return state


def _model_identity(model: nn.Module) -> dict[str, str] | None:
    """Architecture and schedule id of a :func:`deeproots.build_model` model, else None."""
    arch, schedule = getattr(model, "arch", None), getattr(model, "schedule", None)
    if not isinstance(arch, str) or schedule is None or not isinstance(getattr(schedule, "id", None), str):
        return None
    return {"arch": arch, "schedule": schedule.id, "name": getattr(schedule, "name", None) or schedule.id}


def _load_checkpoint(
    path: Path, config: TrainConfig, steps_per_epoch: int, precision: str, model: nn.Module | None = None
) -> dict[str, Any]:
    state = _read_checkpoint(path)
    saved_model, now = state.get("model_identity"), _model_identity(model) if model is not None else None
    if saved_model and now and (saved_model["arch"], saved_model["schedule"]) != (now["arch"], now["schedule"]):
        raise ValueError(
            f"checkpoint {str(path)!r} was trained for schedule {saved_model['name']} (arch {saved_model['arch']}), "
            f"not {now['name']} (arch {now['arch']}); pass the same --arch/--schedule or drop --resume"
        )
    saved = state["config"]
    defaults = TrainConfig()  # a field the checkpoint predates had its default value, or
    if not RECIPE_OPTIONS_BEFORE_ISSUE_17.keys() & saved.keys():  # the recipe options' old values
        defaults = dataclasses.replace(defaults, **RECIPE_OPTIONS_BEFORE_ISSUE_17)
    differ = [f for f in _RECIPE_FIELDS if saved.get(f, getattr(defaults, f)) != getattr(config, f)]
    saved_precision = state.get("precision", "fp32")  # older checkpoints: float32 on the CPU
    if saved_precision != precision:
        differ.append(f"precision ({saved_precision} saved, {precision} now)")
    if state["steps_per_epoch"] != steps_per_epoch:
        differ.append(f"steps per epoch ({state['steps_per_epoch']} saved, {steps_per_epoch} now)")
    if differ:
        raise ValueError(
            f"checkpoint {str(path)!r} was made with a different recipe ({', '.join(differ)}); "
            "resume with the same config and data, or start afresh"
        )
    if model is not None:  # a checkpoint that predates model_identity, or a model not from build_model
        try:
            model.load_state_dict(state["model"])
        except RuntimeError as exc:
            first = next((ln.strip() for ln in str(exc).splitlines()[1:] if ln.strip()), str(exc).splitlines()[0])
            raise ValueError(
                f"checkpoint {str(path)!r} holds the weights of a different model ({first[:160]}); "
                "pass the same --arch/--schedule it was trained with or drop --resume"
            ) from None
    return state


def check_checkpoint_path(path: str | Path) -> Path:
    """``path`` as a Path if a checkpoint can be written there; else a ValueError naming it.

    A file path (not a folder) whose folder exists and is writable, or can be made. A probe file is
    created and removed in the folder, so a read-only or virtual file system (``/proc``) is caught
    before any training, not after the first epoch.
    """
    p = Path(path)
    if p.is_dir():
        raise ValueError(f"checkpoint {str(p)!r} is a folder; give a file path such as {str(p / 'run.pt')!r}")
    if p.exists() and not p.is_file():
        raise ValueError(f"checkpoint {str(p)!r} is not a regular file; give a file path")
    folder = p.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent  # the nearest existing ancestor: the folders below it are made later
    if not folder.is_dir():
        raise ValueError(f"checkpoint {str(p)!r}: {str(folder)!r} is not a folder")
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".deeproots-probe.", suffix=".tmp")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ValueError(
            f"checkpoint {str(p)!r}: cannot write in {str(folder)!r} ({exc.strerror or exc}); choose a writable folder"
        ) from None
    return p


def checkpoint_history(path: str | Path) -> list[EpochResult]:
    """The epochs an epoch-end checkpoint of :func:`fit` holds (what a resumed run starts from).

    Args:
        path: a file written by ``fit(..., checkpoint_path=path)``.

    Returns:
        One :class:`EpochResult` per epoch trained before the checkpoint was written; empty when
        the file does not exist.

    Raises:
        ValueError: the file is not a deeproots checkpoint, or is damaged.
    """
    p = Path(path)
    if not p.exists():
        return []
    state = _read_checkpoint(p)
    return [EpochResult(**h) for h in state["history"]]


def fit(
    model: nn.Module,
    data: DataBundle,
    config: TrainConfig | None = None,
    *,
    on_epoch: Callable[[EpochResult], None] | None = None,
    on_step: Callable[[StepProgress], None] | None = None,
    checkpoint_path: str | Path | None = None,
    resume: bool = False,
) -> FitResult:
    """Train ``model`` on ``data.train``, validating after every epoch.

    Args:
        model: the network, built and initialised by the caller; it is moved to the config's
            device and memory format in place and trained in place.
        data: from :func:`deeproots.load_data`; ``data.test`` is never touched here.
        config: the recipe; :class:`TrainConfig` defaults when None.
        on_epoch: called with each :class:`EpochResult` after the epoch's checkpoint is written
            -- the hook through which a search reports to its scheduler. An exception it raises
            (e.g. a scheduler stopping the trial) stops training and propagates unchanged.
        on_step: called with a :class:`StepProgress` after every step (progress bars).
        checkpoint_path: file written (atomically) at the end of every epoch with the model,
            optimiser, scheduler, epoch and history (``torch.save`` of tensors and plain values;
            it loads with ``weights_only=True``).
        resume: when ``checkpoint_path`` exists, continue after the epoch it holds (a run that
            already finished returns at once); a missing file starts afresh.

    Returns:
        The :class:`FitResult`.

    Raises:
        NonFiniteLossError: the training loss became NaN or infinite (step and value given).
        ValueError: bad device; a checkpoint path that is a folder or not writable; a checkpoint
            that is damaged, not a deeproots checkpoint, or made with another recipe or model.

    Example:
        >>> import torch
        >>> from deeproots import TrainConfig, fit, load_data
        >>> data = load_data("synthetic", num_train=256, num_test=64, val_size=64)
        >>> net = torch.nn.Sequential(
        ...     torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
        ...     torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 10))
        >>> result = fit(net, data, TrainConfig(epochs=2, batch_size=64))
        >>> [r.epoch for r in result.history]
        [1, 2]
    """
    config = config or TrainConfig()
    device = _resolve_device(config.device)
    precision = resolve_precision(config.precision, device)
    memory_format = _memory_format(config)
    checkpoint = check_checkpoint_path(checkpoint_path) if checkpoint_path is not None else None
    check_every = config.finite_check_every or (1 if device.type == "cpu" else 20)
    if config.flip == "alternating" and not isinstance(data.train, TensorSplit):
        raise ValueError(
            "TrainConfig.flip='alternating' needs a TensorSplit training split (CIFAR-sized data), "
            f"got {type(data.train).__name__}"
        )

    with _run_settings(config, device), torch.random.fork_rng(
        devices=[device] if device.type == "cuda" else []
    ):
        model.to(device=device, memory_format=memory_format)
        _apply_batchnorm_settings(model, config)
        resident = device.type == "cuda" and config.gpu_resident
        train = data.train.to(device) if resident else data.train
        val = data.val.to(device) if resident and data.val is not None else data.val
        steps = train.num_batches(config.batch_size, train=True)
        if steps == 0:
            raise ValueError("the training split is empty")
        optimizer = _optimizer(model, config)
        scheduler = _scheduler(optimizer, config, config.epochs * steps)
        criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
        averager: _EMA | _Lookahead | None = None
        if config.ema_decay > 0:
            averager = _EMA(model, config, config.epochs * steps)
        elif config.lookahead_decay > 0:
            averager = _Lookahead(config, config.epochs * steps)

        history: list[EpochResult] = []
        start = 1
        if resume and checkpoint is not None and checkpoint.exists():
            state = _load_checkpoint(checkpoint, config, steps, precision, model)  # loads the weights
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            if averager is not None:
                averager.load_state_dict(state["averager"], device)
            history = [EpochResult(**{"precision": precision, **h}) for h in state["history"]]
            start = state["epoch"] + 1
        resumed_from = start - 1

        for epoch in range(start, config.epochs + 1):
            torch.manual_seed(_epoch_seed(config.seed, epoch))  # dropout etc.; restored on exit
            result = _train_epoch(
                model, train, val, config, epoch, steps, optimizer, scheduler, criterion,
                device, memory_format, check_every, on_step, averager, precision,
            )  # fmt: skip
            history.append(result)
            if checkpoint is not None:
                _save_atomic(
                    {
                        "format": _CHECKPOINT_FORMAT,
                        "epoch": epoch,
                        "steps_per_epoch": steps,
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(),
                        "averager": averager.state_dict() if averager is not None else None,
                        "history": [dataclasses.asdict(h) for h in history],
                        "config": config.to_dict(),
                        "precision": precision,
                        "model_identity": _model_identity(model),
                    },
                    checkpoint,
                )
            if on_epoch is not None:
                on_epoch(result)

    seconds = sum(h.train_seconds for h in history)
    images = sum(h.images for h in history)
    return FitResult(
        history=history,
        val_accuracy=history[-1].val_accuracy if history else math.nan,
        images_per_second=images / seconds if seconds > 0 else math.nan,
        device=str(device),
        precision=precision,
        resumed_from=resumed_from,
    )


#: Weight of each auxiliary classifier's loss (Szegedy et al., "Going Deeper with Convolutions", 2015,
#: Sec. 5: "their loss is added to the total loss of the network with a discount weight (0.3)").
AUX_LOSS_WEIGHT = 0.3


def _training_loss(criterion: nn.Module, out: Tensor | tuple[Tensor, ...], y: Tensor) -> Tensor:
    """The loss of one step. A model with auxiliary classifiers (GoogLeNet) returns ``(logits, aux1,
    aux2, ...)`` in training mode: the main loss plus ``AUX_LOSS_WEIGHT`` times each auxiliary loss."""
    if isinstance(out, tuple):
        main, *aux = out
        return criterion(main.float(), y) + AUX_LOSS_WEIGHT * sum(criterion(a.float(), y) for a in aux)
    return criterion(out.float(), y)


def _train_epoch(
    model: nn.Module,
    train: Split,
    val: Split | None,
    config: TrainConfig,
    epoch: int,
    steps: int,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    criterion: nn.Module,
    device: torch.device,
    memory_format: torch.memory_format,
    check_every: int,
    on_step: Callable[[StepProgress], None] | None,
    averager: _EMA | _Lookahead | None,
    precision: str,
) -> EpochResult:
    model.train()
    losses = torch.zeros(steps, device=device)  # per-step loss, read at the checks only
    checked = 0  # steps whose loss has been verified finite
    images = 0
    mean_loss = math.nan
    _sync(device)
    start = time.perf_counter()  # training phase: from drawing the first batch ...
    batches = _train_batches(train, config, epoch, device, memory_format)
    for step, (x, y) in enumerate(batches):
        with _autocast(config, device):
            loss = _training_loss(criterion, model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        if averager is not None:
            averager.after_step(model, (epoch - 1) * steps + step + 1)
        losses[step] = loss.detach()
        images += y.shape[0]
        if (step + 1) % check_every == 0 or step + 1 == steps:
            window = losses[checked : step + 1]
            if not bool(torch.isfinite(window).all()):  # one device sync per check
                bad = int((~torch.isfinite(window)).nonzero()[0])
                raise NonFiniteLossError(
                    (epoch - 1) * steps + checked + bad + 1, window[bad].item(), epoch
                )
            checked = step + 1
            mean_loss = losses[:checked].mean().item()
        if on_step is not None:
            elapsed = time.perf_counter() - start
            on_step(StepProgress(epoch, step + 1, steps, mean_loss, images / max(elapsed, 1e-9)))
    evaluated = model
    if averager is not None:
        averager.end_epoch(model, last=epoch == config.epochs)
        evaluated = averager.evaluated(model)
    _sync(device)
    train_seconds = time.perf_counter() - start  # ... to the last step done on the device
    val_loss, val_accuracy = (
        evaluate(evaluated, val, config, device=device) if val is not None else (math.nan, math.nan)
    )
    return EpochResult(
        epoch=epoch,
        train_loss=mean_loss,
        val_loss=val_loss,
        val_accuracy=val_accuracy,
        images_per_second=images / train_seconds,
        seconds=time.perf_counter() - start,
        train_seconds=train_seconds,
        images=images,
        precision=precision,
        averaged=evaluated is not model,
    )
