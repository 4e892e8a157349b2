"""Bad input found by a user probe: every one ends in one clear line (CLI) or a ValueError/TypeError naming it (API)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

import deeproots
import deeproots.training
from deeproots import TrainConfig, build_model, count_cost, fit, load_data, resolve_schedule
from deeproots.cost import main as cost_main
from deeproots.train import main as train_main

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("content", [b"junk\n", b"", bytes(range(256)) * 4])
def test_damaged_checkpoint_is_a_value_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "c.pt"
    path.write_bytes(content)
    data = load_data("synthetic", num_train=64, num_test=16, val_size=16)
    with pytest.raises(ValueError, match="cannot read checkpoint .*damaged or not a torch file"):
        fit(build_model("nin"), data, TrainConfig(epochs=1, batch_size=32, threads=1), checkpoint_path=path, resume=True)
    with pytest.raises(ValueError, match="damaged"):
        deeproots.training.checkpoint_history(path)


def test_checkpoint_of_another_schedule_names_both(tmp_path: Path) -> None:
    path = tmp_path / "c.pt"
    data = load_data("synthetic", num_train=64, num_test=16, val_size=16)
    cfg = TrainConfig(epochs=1, batch_size=32, threads=1, precision="fp32")
    fit(build_model("nin", "root-8"), data, cfg, checkpoint_path=path)
    with pytest.raises(ValueError, match=r"trained for schedule root-8 \(arch nin\), not orig"):
        fit(build_model("nin"), data, cfg, checkpoint_path=path, resume=True)
    state = torch.load(path, weights_only=True)
    del state["model_identity"]  # a checkpoint from before model_identity: the weights tell
    torch.save(state, path)
    with pytest.raises(ValueError, match="holds the weights of a different model"):
        fit(build_model("nin"), data, cfg, checkpoint_path=path, resume=True)


def test_checkpoint_path_is_checked_before_training(tmp_path: Path) -> None:
    data = load_data("synthetic", num_train=64, num_test=16, val_size=16)
    cfg = TrainConfig(epochs=1, batch_size=32, threads=1)
    with pytest.raises(ValueError, match="is a folder"):
        fit(build_model("nin"), data, cfg, checkpoint_path=tmp_path, on_epoch=pytest.fail)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="not a folder"):
        fit(build_model("nin"), data, cfg, checkpoint_path=tmp_path / "file" / "c.pt", on_epoch=pytest.fail)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--checkpoint", "{tmp}"], "is a folder"),
        (["--checkpoint", "{tmp}/junk.pt", "--resume"], "damaged or not a torch file"),
        (["--seed", str(2**70)], "--seed: must be < 2**64"),
        (["--seed", str(2**64 - 1), "--seeds", "2"], "goes past 2**64 - 1"),
    ],
)
def test_train_cli_checkpoint_and_seed_one_line(tmp_path: Path, argv: list[str], message: str, capsys) -> None:
    (tmp_path / "junk.pt").write_text("junk\n")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert train_main(["--arch", "nin", "--dataset", "synthetic", "--epochs", "1", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


@pytest.mark.parametrize("field", ["nesterov", "gpu_resident", "bn_weight"])
@pytest.mark.parametrize("value", ["no", 0, 1, None])
def test_every_bool_field_needs_a_bool(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=f"TrainConfig.{field} must be True or False"):
        TrainConfig(**{field: value})


@pytest.mark.parametrize("field", ["epochs", "batch_size", "ema_every", "lookahead_every", "seed", "threads",
                                   "eval_batch_size", "finite_check_every"])  # fmt: skip
def test_int_fields_refuse_bool(field: str) -> None:
    with pytest.raises(ValueError, match=f"TrainConfig.{field}"):
        TrainConfig(**{field: True})


def test_seed_range_is_torchs() -> None:
    with pytest.raises(ValueError, match=r"TrainConfig.seed must be an integer in \[0, 2\*\*64\)"):
        TrainConfig(seed=2**64)
    cfg = TrainConfig(seed=2**64 - 1, epochs=1, batch_size=32, threads=1)
    data = load_data("synthetic", num_train=32, num_test=16, val_size=16, seed=cfg.seed)
    assert len(fit(build_model("nin"), data, cfg).history) == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--input-size", "3", "0", "0"], "--input-size: must be >= 1"),
        (["--input-size", "1", "32", "32"], "first conv 'conv1a' takes 3"),
        (["--input-size", "3", "1", "1"], "smallest square input that fits is (3, 4, 4)"),
        (["--num-classes", "-3"], "--num-classes: must be >= 1"),
        (["--num-classes", "0"], "--num-classes: must be >= 1"),
        (["--latency", "--device", "foo"], "not a torch device"),
        (["--latency", "--device", "meta"], "--device meta"),
        (["--latency", "--threads", "0"], "--threads: must be >= 1"),
        (["--repeats", "x"], "--repeats: expected a whole number"),
    ],
)
def test_cost_cli_bad_options_one_line(argv: list[str], message: str, capsys) -> None:
    assert cost_main(["nin", "orig", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and err[0].startswith("python -m deeproots.cost: error:"), err


def test_cost_cli_process_has_no_traceback() -> None:
    proc = subprocess.run([sys.executable, "-m", "deeproots.cost", "nin", "orig", "--input-size", "3", "1", "1"],
                          capture_output=True, text=True, cwd=REPO, timeout=300)  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("num_classes", [-1, 0, 2.5, "10", True])
def test_build_model_num_classes(num_classes: object) -> None:
    with pytest.raises(ValueError, match="num_classes must be a whole number >= 1"):
        build_model("nin", "root-8", num_classes)


def test_build_model_argument_types() -> None:
    with pytest.raises(ValueError, match="got bytes"):
        build_model("nin", b"root-8")
    with pytest.raises(ValueError, match="aux_logits must be True, False or None"):
        build_model("googlenet", aux_logits="yes")


@pytest.mark.parametrize("size", ["abc", (3, 32.5, 32), (3, 0, 0), (3, True, 32), (3, 32)])
def test_count_cost_input_size(size: object) -> None:
    with pytest.raises(ValueError, match=r"input_size must be \(C, H, W\), three whole numbers >= 1"):
        count_cost(build_model("nin"), size)


def test_count_cost_needs_a_module() -> None:
    with pytest.raises(TypeError, match="count_cost needs a built model"):
        count_cost("nin", (3, 32, 32))


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        ("root-x", "N a whole number of groups >= 1"),
        ("root-5", "schedule 'root-5' for nin: layer 'conv2a'"),
        ('{"conv2a": 8}', "is not a schedule name or id; accepted:"),
        (" root-8 ", "surrounding spaces; write it as 'root-8'"),
        ("nin:1-1-1-1-1-1-1-1-1 ", "surrounding spaces"),
        ("nin:1-1-1-+1-1-1-1-1-1", "whole numbers"),
    ],
)
def test_schedule_string_messages(schedule: str, message: str) -> None:
    with pytest.raises(ValueError, match="^.*" + __import__("re").escape(message)):
        resolve_schedule("nin", schedule)
    assert "power of two" not in str(pytest.raises(ValueError, resolve_schedule, "nin", "root-x").value)
