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
    # float32: the same numbers on every CPU (bf16 has its own tests).
    base = {"epochs": 3, "batch_size": 64, "lr": 0.2, "device": "cpu", "threads": 1, "precision": "fp32"}
    return TrainConfig(**{**base, **kw})


def test_fit_reduces_loss_and_reports_each_epoch(data) -> None:
    model = _net()
    before, _ = evaluate(model, data.val)
    seen: list[EpochResult] = []
    result = fit(model, data, _config(), on_epoch=seen.append)
    after, accuracy = evaluate(model, data.val)
    assert after < before - 0.2
    assert accuracy > 0.2  # twice chance (0.1); the recipe is tuned for CIFAR, 18 steps here give 0.28
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


def test_a_checkpoint_older_than_the_recipe_options_resumes_only_their_old_values(data, tmp_path: Path) -> None:
    from deeproots.training import RECIPE_OPTIONS_BEFORE_ISSUE_17

    ckpt = tmp_path / "old.pt"
    old = _config(epochs=1, **RECIPE_OPTIONS_BEFORE_ISSUE_17)
    fit(_net(), data, old, checkpoint_path=ckpt)
    state = torch.load(ckpt, weights_only=True)
    for key in ("units", "flip", "ema_decay", "ema_every", "ema_start", "lookahead_decay", "lookahead_every",
                "lookahead_start", "bn_momentum", "bn_weight", "bias_lr_scale"):  # fmt: skip
        del state["config"][key]  # as written before they existed
    torch.save(state, ckpt)
    assert fit(_net(), data, old, checkpoint_path=ckpt, resume=True).resumed_from == 1
    with pytest.raises(ValueError, match="different recipe"):
        fit(_net(), data, _config(epochs=1, flip="alternating"), checkpoint_path=ckpt, resume=True)


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
     ("label_smoothing", 1.0), ("memory_format", "nhwc"), ("device", "tpu"), ("threads", 0),
     ("precision", "fp16"), ("precision", True), ("units", "example"), ("flip", "none"),
     ("ema_decay", 1.0), ("ema_decay", -0.1), ("ema_every", 0), ("ema_start", 1.0),
     ("lookahead_decay", float("nan")), ("lookahead_every", 2.5), ("lookahead_start", -0.5),
     ("bn_momentum", 0.0), ("bn_momentum", 1.5), ("bn_weight", "no"), ("bias_lr_scale", 0)],
)  # fmt: skip
def test_config_rejects_bad_values(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=f"TrainConfig.{field}") as info:
        TrainConfig(**{field: value})
    assert "\n" not in str(info.value)


def test_config_refuses_two_weight_averages_at_once() -> None:
    with pytest.raises(ValueError, match="TrainConfig.lookahead_decay must be 0 when ema_decay > 0"):
        TrainConfig(ema_decay=0.9, lookahead_decay=0.9)


def test_to_dict_is_complete_and_round_trips() -> None:
    import dataclasses

    config = TrainConfig(
        precision="bf16", units="1024", lr=17.6, weight_decay=0.0088, lr_schedule="triangular",
        flip="alternating", ema_decay=0.987, bn_momentum=0.4, bn_weight=False, bias_lr_scale=64.0,
    )  # fmt: skip
    d = config.to_dict()
    assert set(d) == {f.name for f in dataclasses.fields(TrainConfig)}
    assert TrainConfig(**d) == config and TrainConfig(**json.loads(json.dumps(d))) == config


# --------------------------------------------------------------------------- precision


@pytest.fixture
def capabilities(monkeypatch):
    """Pretend the CPU reports the given capabilities (the answer is cached: clear it)."""
    from deeproots import training

    def pretend(**caps: object) -> None:
        monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"architecture": "x", **caps})
        training._native_bf16.cache_clear()

    yield pretend
    training._native_bf16.cache_clear()


@pytest.mark.parametrize(
    ("caps", "native"),
    [({"avx512_bf16": True}, True), ({"amx_bf16": True, "avx512_bf16": False}, True),
     ({"bf16": True}, True), ({"sve_bf16": True}, True),
     ({"avx512_bf16": False, "avx2": True, "avx512_f": True}, False), ({}, False)],
)  # fmt: skip
def test_auto_precision_is_bf16_only_where_the_cpu_computes_it(capabilities, caps, native) -> None:
    from deeproots import native_bf16, resolve_precision

    capabilities(**caps)
    assert native_bf16("cpu") is native
    assert resolve_precision("auto", "cpu") == ("bf16" if native else "fp32")
    assert resolve_precision("fp32", "cpu") == "fp32" and resolve_precision("bf16", "cpu") == "bf16"


def test_resolve_precision_rejects_unknown_names() -> None:
    from deeproots import resolve_precision

    with pytest.raises(ValueError, match="precision must be"):
        resolve_precision("half", "cpu")


def test_this_machine_reports_what_torch_reports() -> None:
    from deeproots import native_bf16

    caps = torch.cpu.get_capabilities()
    expected = any(caps.get(k) for k in ("avx512_bf16", "amx_bf16", "bf16", "sve_bf16"))
    assert native_bf16("cpu") is bool(expected)


def _conv_dtypes(model: nn.Module) -> list[torch.dtype]:
    seen: list[torch.dtype] = []
    model[0].register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    return seen


@pytest.mark.parametrize(("precision", "dtype"), [("bf16", torch.bfloat16), ("fp32", torch.float32)])
def test_fit_trains_and_records_the_resolved_precision(data, precision, dtype) -> None:
    model = _net()
    seen = _conv_dtypes(model)
    result = fit(model, data, _config(precision=precision))
    assert result.precision == precision and {r.precision for r in result.history} == {precision}
    assert set(seen) == {dtype}  # training and validation passes alike
    assert model[0].weight.dtype == torch.float32  # autocast: the weights stay float32
    assert result.history[-1].train_loss < result.history[0].train_loss


def test_auto_precision_follows_the_cpu(data, capabilities) -> None:
    capabilities(avx2=True)  # no native bf16
    assert fit(_net(), data, _config(precision="auto", epochs=1)).precision == "fp32"
    capabilities(amx_bf16=True)
    model = _net()
    seen = _conv_dtypes(model)
    assert fit(model, data, _config(precision="auto", epochs=1)).precision == "bf16"
    assert set(seen) == {torch.bfloat16}


def test_resume_refuses_another_precision(data, tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt.pt"
    fit(_net(), data, _config(epochs=2, precision="bf16"), checkpoint_path=ckpt)
    with pytest.raises(ValueError, match=r"different recipe \(precision \(bf16 saved, fp32 now\)"):
        fit(_net(), data, _config(epochs=2, precision="fp32"), checkpoint_path=ckpt, resume=True)


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


# --------------------------------------------------------------------------- recipe components


_COMPONENTS = {
    "ema": {"ema_decay": 0.9, "ema_every": 2, "ema_start": 0.0},
    "lookahead": {"lookahead_decay": 0.9, "lookahead_every": 2, "lookahead_start": 0.0},
    "rest": {"flip": "alternating", "lr_schedule": "triangular", "units": "1024", "lr": 17.6,
             "weight_decay": 0.0088, "bn_momentum": 0.4, "bn_weight": False, "bias_lr_scale": 64.0},
}  # fmt: skip


@pytest.mark.parametrize("name", list(_COMPONENTS))
def test_resume_is_exact_with_every_component(data, tmp_path: Path, name: str) -> None:
    config = _config(**_COMPONENTS[name])
    uninterrupted = _net()
    full = fit(uninterrupted, data, config)

    def stop_after_one(r: EpochResult) -> None:
        if r.epoch == 1:
            raise KeyboardInterrupt

    ckpt = tmp_path / "ckpt.pt"
    with pytest.raises(KeyboardInterrupt):
        fit(_net(), data, config, on_epoch=stop_after_one, checkpoint_path=ckpt)
    resumed_model = _net()
    resumed = fit(resumed_model, data, config, checkpoint_path=ckpt, resume=True)
    assert resumed.resumed_from == 1
    # The averages (EMA weights, lookahead slow weights) come back from the checkpoint: the
    # resumed run ends with the very same weights as the one that never stopped.
    for key, a in uninterrupted.state_dict().items():
        assert torch.equal(a, resumed_model.state_dict()[key]), key
    assert [r.val_accuracy for r in resumed.history] == [r.val_accuracy for r in full.history]


@pytest.mark.parametrize("name", ["ema", "lookahead"])
def test_weight_averages_change_the_result_and_leave_the_evaluated_weights(data, name) -> None:
    plain, averaged = _net(), _net()
    fit(plain, data, _config())
    result = fit(averaged, data, _config(**_COMPONENTS[name]))
    assert any(not torch.equal(a, b) for a, b in zip(plain.state_dict().values(), averaged.state_dict().values()))
    # The validation figure of the last epoch is that of the weights fit leaves in the model.
    loss, accuracy = evaluate(averaged, data.val, _config())
    assert math.isclose(accuracy, result.val_accuracy, abs_tol=1e-9)
    assert math.isclose(loss, result.history[-1].val_loss, rel_tol=1e-5)
    assert [r.averaged for r in result.history] == ([True] * 3 if name == "ema" else [False] * 3)


def test_ema_starts_late_and_averages_from_then(data) -> None:
    result = fit(_net(), data, _config(ema_decay=0.9, ema_every=1, ema_start=0.5))  # 18 steps
    assert [r.averaged for r in result.history] == [False, True, True]


def test_alternating_flips_flip_every_image_the_other_way_each_epoch() -> None:
    from deeproots.data import TensorSplit
    from deeproots.training import _alternating_flip_batches

    n = 64
    images = torch.randint(0, 256, (n, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    split = TensorSplit(images, torch.arange(n), (0.0, 0.0, 0.0), (1 / 255,) * 3, padding=0, flip=True)

    def flipped(epoch: int) -> torch.Tensor:
        state = torch.zeros(n, dtype=torch.bool)
        count = 0
        for x, y in _alternating_flip_batches(split, 16, 7, epoch, torch.device("cpu"), torch.contiguous_format):
            for image, i in zip(x, y.tolist()):
                original = images[i].float()
                assert torch.equal(image, original) or torch.equal(image, original.flip(-1))
                state[i] = not torch.equal(image, original)
                count += 1
        assert count == n
        return state

    one, two, three = flipped(1), flipped(2), flipped(3)
    assert bool((one != two).all()) and torch.equal(one, three)
    assert 16 < int(one.sum()) < 48  # each image's first flip is a fair coin


def test_alternating_flips_need_tensor_data(data) -> None:
    from deeproots.data import DataBundle, FolderSplit

    files = FolderSplit((), None, torch.empty(0, dtype=torch.long), (0.5,) * 3, (0.5,) * 3)
    bundle = DataBundle("imagefolder", files, None, files, 10, (3, 16, 16), tuple("abcdefghij"))
    with pytest.raises(ValueError, match="TrainConfig.flip='alternating' needs a TensorSplit"):
        fit(_net(), bundle, _config(flip="alternating"))


def test_auto_flip_alternates_on_tensor_data_and_is_random_on_folders(data) -> None:
    from deeproots.data import FolderSplit
    from deeproots.training import _alternates, _train_batches

    files = FolderSplit((), None, torch.empty(0, dtype=torch.long), (0.5,) * 3, (0.5,) * 3)
    assert _alternates(_config(flip="auto"), data.train) and not _alternates(_config(flip="auto"), files)
    assert not _alternates(_config(flip="random"), data.train)
    cpu, fmt = torch.device("cpu"), torch.contiguous_format
    for epoch in (1, 2):
        auto = list(_train_batches(data.train, _config(flip="auto"), epoch, cpu, fmt))
        alternating = list(_train_batches(data.train, _config(flip="alternating"), epoch, cpu, fmt))
        assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(auto, alternating))


def test_triangular_schedule_follows_airbench() -> None:
    from deeproots.training import _optimizer, _scheduler

    config = _config(lr_schedule="triangular", warmup_fraction=0.25, lr=1.0)
    optimizer = _optimizer(_net(), config)
    scheduler = _scheduler(optimizer, config, 100)
    lrs = []
    for _ in range(100):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert math.isclose(lrs[0], 0.2) and math.isclose(lrs[25], 1.0) and max(lrs) == lrs[25]
    assert all(a < b for a, b in zip(lrs[:25], lrs[1:26])) and all(a > b for a, b in zip(lrs[25:], lrs[26:]))
    assert math.isclose(lrs[99], 1 - 0.93 * 74 / 75)  # reaches 0.07 at step 100, the one after the last


@pytest.mark.parametrize(("batch_size", "momentum", "lr"), [(128, 0.9, 0.2), (64, 0.9, 0.1), (128, 0.8, 0.2 * 11 / 6)])
def test_units_per_1024_examples_follow_airbench(batch_size: int, momentum: float, lr: float) -> None:
    from deeproots.training import _optimizer

    # 17.6 / 0.0088 per 1,024 examples are lr 0.2 / weight decay 5e-4 at batch 128, momentum 0.9.
    config = _config(units="1024", lr=17.6, weight_decay=0.0088, batch_size=batch_size, momentum=momentum)
    groups = _optimizer(_net(), config).param_groups
    assert all(math.isclose(g["lr"], lr) for g in groups)
    assert math.isclose(groups[0]["weight_decay"], 5e-4) and groups[1]["weight_decay"] == 0.0
    # Weight decay applied per step at peak (step size x coefficient): weight_decay * batch / K.
    k = 1024 * (1 + 1 / (1 - momentum))
    assert math.isclose(groups[0]["lr"] * groups[0]["weight_decay"], 0.0088 * batch_size / k)


def test_batchnorm_settings_and_bias_learning_rate(data) -> None:
    from deeproots.training import _optimizer

    config = _config(bn_momentum=0.4, bn_weight=False, bias_lr_scale=64.0)
    model = _net()
    groups = _optimizer(model, config).param_groups
    assert [len(g["params"]) for g in groups] == [3, 5, 2]  # weights | conv/linear biases + BN weights | BN biases
    assert groups[2]["lr"] == 64 * groups[0]["lr"] and groups[2]["weight_decay"] == 0.0
    assert {id(p) for p in groups[2]["params"]} == {id(model[1].bias), id(model[5].bias)}
    fit(model, data, config)
    for bn in (model[1], model[5]):
        assert bn.momentum == 0.4 and not bn.weight.requires_grad and bool((bn.weight == 1).all())
        assert bool((bn.bias != 0).any())  # the bias trains
    assert len(_optimizer(_net(), _config()).param_groups) == 2  # default: no third group
