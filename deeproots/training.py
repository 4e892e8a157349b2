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
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from .data import DataBundle
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
    "checkpoint_history",
]

_CHECKPOINT_FORMAT = 1
# Fields that shape the optimisation: a checkpoint resumes only under the same values.
_RECIPE_FIELDS = (
    "epochs",
    "batch_size",
    "lr",
    "lr_schedule",
    "warmup_fraction",
    "momentum",
    "nesterov",
    "weight_decay",
    "label_smoothing",
    "seed",
)


@dataclass(frozen=True)
class TrainConfig:
    """Every knob of a training run, in one place.

    The defaults are the recipe the search uses: SGD with Nesterov momentum, a one-cycle learning
    rate, light label smoothing, bf16 autocast on CUDA and channels_last everywhere (measured on the
    2-core CPU: NIN trains ~1.65x faster in channels_last than NCHW). With them, a full-width NIN
    reaches ~47 % validation accuracy after one epoch on 10,000 CIFAR-10 images (measured, seed 0:
    peak lr 0.1 / 0.2 / 0.4 gave 45.8 / 47.3 / 47.8 %; cosine at 0.2 47.2 %; no smoothing 45.3 %
    at 0.1).

    Example:
        >>> from deeproots import TrainConfig
        >>> TrainConfig(epochs=30, lr_schedule="cosine").batch_size
        128
    """

    epochs: int = 10  # passes over the training split
    batch_size: int = 128  # images per optimiser step
    lr: float = 0.2  # peak learning rate (per step of `batch_size` images), reached after warm-up
    lr_schedule: Literal["onecycle", "cosine"] = "onecycle"  # onecycle: linear up, linear down
    # to ~0; cosine: linear warm-up, then half a cosine down to 0. Both stepped every batch.
    warmup_fraction: float = 0.15  # fraction of all steps spent warming up to `lr`
    momentum: float = 0.9  # SGD momentum (dimensionless)
    nesterov: bool = True  # Nesterov momentum
    weight_decay: float = 5e-4  # L2 coefficient on conv/linear weights (not biases, not BatchNorm)
    label_smoothing: float = 0.1  # probability mass spread over all classes in the training loss
    bf16: bool = True  # bfloat16 autocast of forward + loss on CUDA; CPU always runs float32
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

        need(is_int(self.epochs) and self.epochs >= 1, "epochs", "an integer >= 1")
        need(is_int(self.batch_size) and self.batch_size >= 1, "batch_size", "an integer >= 1")
        need(is_num(self.lr) and self.lr > 0, "lr", "a positive number")
        need(self.lr_schedule in ("onecycle", "cosine"), "lr_schedule", "'onecycle' or 'cosine'")
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
        need(
            self.memory_format in ("channels_last", "contiguous"),
            "memory_format",
            "'channels_last' or 'contiguous'",
        )
        need(is_int(self.seed) and self.seed >= 0, "seed", "an integer >= 0")
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
    """

    epoch: int
    train_loss: float
    val_loss: float
    val_accuracy: float
    images_per_second: float
    seconds: float
    train_seconds: float = 0.0
    images: int = 0


@dataclass(frozen=True)
class FitResult:
    """The outcome of :func:`fit`.

    Attributes:
        history: one :class:`EpochResult` per epoch (those of a resumed run included).
        val_accuracy: the final epoch's validation accuracy -- the figure a search optimises.
        images_per_second: training throughput over all epochs of ``history``.
        device: the device trained on, e.g. ``"cpu"`` or ``"cuda:0"``.
        resumed_from: the epoch the checkpoint held when training resumed, 0 for a fresh run.
    """

    history: list[EpochResult]
    val_accuracy: float
    images_per_second: float
    device: str
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


def _autocast(config: TrainConfig, device: torch.device) -> contextlib.AbstractContextManager:
    if device.type == "cuda" and config.bf16:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _epoch_seed(seed: int, epoch: int) -> int:
    return seed * 1_000_003 + epoch


def _optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.SGD:
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.dim() > 1 else no_decay).append(p)  # biases and BN params have dim 1
    return torch.optim.SGD(
        [
            {"params": decay, "weight_decay": config.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=config.lr,
        momentum=config.momentum,
        nesterov=config.nesterov,
    )


def _warmup_cosine(total: int, warmup: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))

    return factor


def _scheduler(
    optimizer: torch.optim.Optimizer, config: TrainConfig, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    if config.lr_schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=config.lr,
            total_steps=total_steps,
            pct_start=max(config.warmup_fraction, 1e-6),
            anneal_strategy="linear",
            cycle_momentum=False,  # keep `momentum` what the config says
            div_factor=10.0,  # start at lr / 10
            final_div_factor=100.0,  # end at lr / 1000
        )
    warmup = round(config.warmup_fraction * total_steps)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, _warmup_cosine(total_steps, warmup))


def _model_memory_format(model: nn.Module) -> torch.memory_format:
    for p in model.parameters():
        if p.dim() == 4:
            channels_last = p.is_contiguous(memory_format=torch.channels_last)
            return torch.channels_last if channels_last else torch.contiguous_format
    return torch.contiguous_format


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
        config: supplies ``eval_batch_size``, ``bf16`` (autocast on CUDA) and ``threads``;
            defaults otherwise.
        device: where to evaluate; the model must already be there.

    Returns:
        ``(loss, accuracy)`` with accuracy in [0, 1]; ``(nan, nan)`` for an empty split.

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
    if device is None:
        first = next(model.parameters(), None)
        device = first.device if first is not None else torch.device("cpu")
    device = torch.device(device)
    if len(split) == 0:
        return math.nan, math.nan
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    try:
        with _run_settings(config, device), torch.inference_mode(), _autocast(config, device):
            batches = split.batches(
                config.eval_batch_size, device=device, memory_format=_model_memory_format(model)
            )
            for images, labels in batches:
                logits = model(images).float()
                loss_sum += nn.functional.cross_entropy(logits, labels, reduction="sum")
                correct += (logits.argmax(1) == labels).sum()
    finally:
        model.train(was_training)
    n = len(split)
    return loss_sum.item() / n, correct.item() / n


def _load_checkpoint(
    path: Path, config: TrainConfig, steps_per_epoch: int
) -> dict[str, Any]:
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("format") != _CHECKPOINT_FORMAT:
        raise ValueError(f"{str(path)!r} is not a deeproots checkpoint (format {_CHECKPOINT_FORMAT})")
    saved = state["config"]
    differ = [f for f in _RECIPE_FIELDS if saved.get(f) != getattr(config, f)]
    if state["steps_per_epoch"] != steps_per_epoch:
        differ.append(f"steps per epoch ({state['steps_per_epoch']} saved, {steps_per_epoch} now)")
    if differ:
        raise ValueError(
            f"checkpoint {str(path)!r} was made with a different recipe ({', '.join(differ)}); "
            "resume with the same config and data, or start afresh"
        )
    return state


def checkpoint_history(path: str | Path) -> list[EpochResult]:
    """The epochs an epoch-end checkpoint of :func:`fit` holds (what a resumed run starts from).

    Args:
        path: a file written by ``fit(..., checkpoint_path=path)``.

    Returns:
        One :class:`EpochResult` per epoch trained before the checkpoint was written; empty when
        the file does not exist.

    Raises:
        ValueError: the file is not a deeproots checkpoint.
    """
    p = Path(path)
    if not p.exists():
        return []
    state = torch.load(p, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("format") != _CHECKPOINT_FORMAT:
        raise ValueError(f"{str(p)!r} is not a deeproots checkpoint (format {_CHECKPOINT_FORMAT})")
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
        ValueError: bad device, or a checkpoint made with another recipe.

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
    memory_format = _memory_format(config)
    checkpoint = Path(checkpoint_path) if checkpoint_path is not None else None
    check_every = config.finite_check_every or (1 if device.type == "cpu" else 20)

    with _run_settings(config, device), torch.random.fork_rng(
        devices=[device] if device.type == "cuda" else []
    ):
        model.to(device=device, memory_format=memory_format)
        resident = device.type == "cuda" and config.gpu_resident
        train = data.train.to(device) if resident else data.train
        val = data.val.to(device) if resident and data.val is not None else data.val
        steps = train.num_batches(config.batch_size, train=True)
        if steps == 0:
            raise ValueError("the training split is empty")
        optimizer = _optimizer(model, config)
        scheduler = _scheduler(optimizer, config, config.epochs * steps)
        criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)

        history: list[EpochResult] = []
        start = 1
        if resume and checkpoint is not None and checkpoint.exists():
            state = _load_checkpoint(checkpoint, config, steps)
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            history = [EpochResult(**h) for h in state["history"]]
            start = state["epoch"] + 1
        resumed_from = start - 1

        for epoch in range(start, config.epochs + 1):
            torch.manual_seed(_epoch_seed(config.seed, epoch))  # dropout etc.; restored on exit
            result = _train_epoch(
                model, train, val, config, epoch, steps, optimizer, scheduler, criterion,
                device, memory_format, check_every, on_step,
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
                        "history": [dataclasses.asdict(h) for h in history],
                        "config": config.to_dict(),
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
) -> EpochResult:
    model.train()
    losses = torch.zeros(steps, device=device)  # per-step loss, read at the checks only
    checked = 0  # steps whose loss has been verified finite
    images = 0
    mean_loss = math.nan
    _sync(device)
    start = time.perf_counter()  # training phase: from drawing the first batch ...
    batches = train.batches(
        config.batch_size,
        train=True,
        device=device,
        seed=_epoch_seed(config.seed, epoch),
        memory_format=memory_format,
    )
    for step, (x, y) in enumerate(batches):
        with _autocast(config, device):
            loss = _training_loss(criterion, model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
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
    _sync(device)
    train_seconds = time.perf_counter() - start  # ... to the last step done on the device
    val_loss, val_accuracy = (
        evaluate(model, val, config, device=device) if val is not None else (math.nan, math.nan)
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
    )
