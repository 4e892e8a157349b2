"""deeproots.training and the ``python -m deeproots.train`` CLI, on synthetic data and tiny nets."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from deeproots import (
    EpochResult,
    NonFiniteLossError,
    TrainConfig,
    evaluate,
    fit,
    load_data,
)
from deeproots.train import main

REPO = Path(__file__).resolve().parents[2]


def _net(num_classes: int = 10) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 16, 3, padding=1, groups=4),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, num_classes),
    )


@pytest.fixture(scope="module")
def data():
    return load_data("synthetic", num_train=448, num_test=64, val_size=64, input_size=(3, 16, 16))


def _config(**kw) -> TrainConfig:
    # One thread: tiny nets gain nothing from two, and a busy 2-core box makes two crawl.
    base = {"epochs": 3, "batch_size": 64, "lr": 0.2, "device": "cpu", "threads": 1}
    return TrainConfig(**{**base, **kw})


def test_fit_reduces_loss_and_reports_each_epoch(data) -> None:
    model = _net()
    before, _ = evaluate(model, data.val)
    seen: list[EpochResult] = []
    result = fit(model, data, _config(), on_epoch=seen.append)
    after, accuracy = evaluate(model, data.val)
    assert after < before - 0.2
    assert accuracy > 0.3  # chance is 0.1
    assert [r.epoch for r in result.history] == [1, 2, 3] and seen == result.history
    assert result.history[-1].train_loss < result.history[0].train_loss
    assert result.val_accuracy == result.history[-1].val_accuracy
    assert math.isclose(result.history[-1].val_loss, after, rel_tol=1e-4)
    for r in result.history:
        assert r.images == 384 and r.images_per_second > 0 and r.seconds >= r.train_seconds > 0
    assert result.images_per_second > 0 and result.device == "cpu"
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last)


def test_cosine_schedule_and_contiguous_format_train_too(data) -> None:
    model = _net()
    result = fit(model, data, _config(lr_schedule="cosine", memory_format="contiguous"))
    assert result.history[-1].train_loss < result.history[0].train_loss
    assert model[0].weight.is_contiguous()


class _NaNAfter(nn.Module):
    """Wraps a model; its output turns to NaN from the ``start``-th forward pass in training."""

    def __init__(self, model: nn.Module, start: int) -> None:
        super().__init__()
        self.model, self.start, self.calls = model, start, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        if self.training:
            self.calls += 1
            if self.calls >= self.start:
                out = out * float("nan")
        return out


@pytest.mark.parametrize("check_every", [1, 4])
def test_non_finite_loss_names_the_step(data, check_every: int) -> None:
    model = _NaNAfter(_net(), start=9)  # 6 steps per epoch: step 9 is epoch 2, batch 3
    with pytest.raises(NonFiniteLossError, match=r"nan at step 9 \(epoch 2\)") as info:
        fit(model, data, _config(finite_check_every=check_every))
    assert info.value.step == 9 and info.value.epoch == 2 and math.isnan(info.value.loss)


def test_huge_learning_rate_is_caught(data) -> None:
    with pytest.raises(NonFiniteLossError, match="step"):
        fit(_net(), data, _config(lr=1e9, label_smoothing=0.0))


def test_callback_exception_propagates_after_checkpoint(data, tmp_path: Path) -> None:
    class Stop(Exception):
        pass

    def stop_at_two(r: EpochResult) -> None:
        if r.epoch == 2:
            raise Stop

    ckpt = tmp_path / "ckpt.pt"
    with pytest.raises(Stop):
        fit(_net(), data, _config(), on_epoch=stop_at_two, checkpoint_path=ckpt)
    state = torch.load(ckpt, weights_only=True)
    assert state["epoch"] == 2 and {"model", "optimizer", "scheduler"} <= set(state)


def test_resume_continues_from_the_saved_epoch(data, tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt.pt"
    uninterrupted = _net()
    full = fit(uninterrupted, data, _config())

    def stop_after_one(r: EpochResult) -> None:
        if r.epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(_net(), data, _config(), on_epoch=stop_after_one, checkpoint_path=ckpt)
    resumed_model, seen = _net(), []
    resumed = fit(
        resumed_model, data, _config(), on_epoch=seen.append, checkpoint_path=ckpt, resume=True
    )
    assert resumed.resumed_from == 1 and [r.epoch for r in seen] == [2, 3]
    assert [r.epoch for r in resumed.history] == [1, 2, 3]
    # Same batches, optimiser state and schedule: the same model as the run that never stopped.
    for a, b in zip(uninterrupted.state_dict().values(), resumed_model.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-5)
    assert math.isclose(resumed.val_accuracy, full.val_accuracy, abs_tol=1e-9)
    done = fit(_net(), data, _config(), checkpoint_path=ckpt, resume=True)  # already finished
    assert done.resumed_from == 3 and len(done.history) == 3


def test_resume_refuses_another_recipe(data, tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt.pt"
    fit(_net(), data, _config(epochs=1), checkpoint_path=ckpt)
    with pytest.raises(ValueError, match="different recipe.*lr"):
        fit(_net(), data, _config(epochs=1, lr=0.05), checkpoint_path=ckpt, resume=True)


def test_resume_without_a_checkpoint_starts_afresh(data, tmp_path: Path) -> None:
    result = fit(_net(), data, _config(epochs=1), checkpoint_path=tmp_path / "x.pt", resume=True)
    assert result.resumed_from == 0 and (tmp_path / "x.pt").exists()


class _ConstantWithAux(nn.Module):
    """Logits that are two FC biases (the input is ignored): (main, aux) in training mode, main in eval."""

    aux_heads = ("aux",)

    def __init__(self) -> None:
        super().__init__()
        self.main, self.aux = nn.Linear(1, 10), nn.Linear(1, 10)
        with torch.no_grad():
            for fc, scale in ((self.main, 1.0), (self.aux, -2.0)):
                fc.weight.zero_()
                fc.bias.copy_(scale * torch.arange(10.0) / 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        z = x.new_zeros(x.shape[0], 1)
        return (self.main(z), self.aux(z)) if self.training else self.main(z)


def test_auxiliary_classifier_losses_weigh_0_3(data) -> None:
    """GoogLeNet's recipe (Szegedy et al. 2015, Sec. 5): loss = main + 0.3 x each auxiliary loss."""
    model = _ConstantWithAux()
    y = data.train.labels
    main = nn.functional.cross_entropy(model.main.bias.detach().expand(len(y), 10), y)
    aux = nn.functional.cross_entropy(model.aux.bias.detach().expand(len(y), 10), y)
    # one step over the whole split: the reported loss is the loss before the update
    result = fit(model, data, _config(epochs=1, batch_size=len(y), label_smoothing=0.0))
    assert result.history[0].train_loss == pytest.approx((main + 0.3 * aux).item(), rel=1e-6)
    assert math.isfinite(evaluate(model, data.val)[0])  # evaluation sees the main logits only


def test_evaluate_restores_training_mode(data) -> None:
    model = _net().train()
    loss, accuracy = evaluate(model, data.test, _config())
    assert model.training and loss > 0 and 0 <= accuracy <= 1


@pytest.mark.parametrize(
    ("field", "value"),
    [("epochs", 0), ("batch_size", -1), ("lr", 0.0), ("lr_schedule", "step"), ("momentum", 1.0),
     ("label_smoothing", 1.0), ("memory_format", "nhwc"), ("device", "tpu"), ("threads", 0)],
)  # fmt: skip
def test_config_rejects_bad_values(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=f"TrainConfig.{field}"):
        TrainConfig(**{field: value})


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--arch", "nin", "--dataset", "mnist"], "invalid choice: 'mnist'"),
        (["--arch", "nin", "--data-root", "/no/such/folder"], "'/no/such/folder' does not exist"),
        (["--arch", "nin", "--epochs", "0"], "--epochs: must be >= 1"),
        (["--arch", "nin", "--subset", "ten"], "--subset: expected int"),
        (["--arch", "nin", "--lr", "nan"], "--lr: expected a finite number"),
        (["--arch", "nin", "--schedule", "root-7"], "conv2a"),
        (["--arch", "nosuchnet"], "unknown architecture"),
        (["--arch", "nin", "--resume"], "--resume needs --checkpoint"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(argv: list[str], message: str, capsys) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and err[0].startswith("python -m deeproots.train")


def test_cli_process_bad_input_has_no_traceback(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "deeproots.train", "--arch", "nin", "--data-root", str(tmp_path / "x")],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2 and proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_cli_trains_and_prints_json(capsys, tmp_path: Path) -> None:
    argv = ["--arch", "nin", "--schedule", "root-8", "--dataset", "synthetic", "--subset", "64",
            "--val-size", "50", "--batch-size", "32", "--epochs", "1", "--json",
            "--threads", "1", "--checkpoint", str(tmp_path / "c.pt")]  # fmt: skip
    assert main(argv) == 0
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("val_accuracy", "test_accuracy", "images_per_second", "params", "flops"):
        assert record[key] is not None
    assert record["schedule"] == "nin:1-1-1-8-1-1-4-1-1" and record["train_images"] == 64
    assert record["params"] < 966_986 and record["history"][0]["epoch"] == 1
