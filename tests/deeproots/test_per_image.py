"""Per-image results: ``evaluate_per_image``, packing them as bits, the binomial standard error."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from deeproots import TrainConfig, accuracy_se, evaluate, evaluate_per_image, fit, load_data, pack_correct, unpack_correct


@pytest.fixture(scope="module")
def data():
    return load_data("synthetic", num_train=256, num_test=40, val_size=70, input_size=(3, 16, 16))


@pytest.fixture(scope="module")
def trained(data) -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                        nn.Flatten(), nn.Linear(8, 10))  # fmt: skip
    fit(net, data, TrainConfig(epochs=1, batch_size=32, lr=0.1, device="cpu", threads=1, precision="fp32"))
    return net


def test_per_image_flags_are_in_split_order_and_average_to_evaluate(data, trained: nn.Module) -> None:
    # 70 images in batches of 32: three batches, the last one partial -- the order must survive the joins.
    cfg = TrainConfig(eval_batch_size=32, device="cpu", threads=1, precision="fp32")
    loss, correct = evaluate_per_image(trained, data.val, cfg)
    ref_loss, ref_acc = evaluate(trained, data.val, cfg)
    assert correct.dtype == torch.bool and correct.shape == (70,) and correct.device.type == "cpu"
    assert int(correct.sum()) / len(correct) == ref_acc  # the same pass: exactly
    assert loss == pytest.approx(ref_loss, rel=1e-6)
    # image by image, one at a time: the same flags in the same order
    trained.eval()
    with torch.inference_mode():
        one_by_one = [bool(trained(x).argmax(1).item() == y.item()) for x, y in data.val.batches(1)]
    assert correct.tolist() == one_by_one
    assert 0 < int(correct.sum()) < 70  # a partly trained net: both kinds of image present, so order matters


def test_per_image_gives_the_model_back_in_its_mode(data, trained: nn.Module) -> None:
    trained.train()
    evaluate_per_image(trained, data.val)
    assert trained.training


@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 70, 5000])
def test_pack_unpack_round_trip(n: int) -> None:
    rng = np.random.default_rng(n)
    flags = rng.random(n) < 0.4
    data = pack_correct(flags)
    assert len(data) == (n + 7) // 8
    assert (unpack_correct(data, n) == flags).all()
    assert unpack_correct(data, n).dtype == np.bool_


def test_pack_layout_is_numpy_packbits_big_endian() -> None:
    # images 0, 2, 3 right in the first byte -> 1011 0000; image 8 right in the second -> 1000 0000
    flags = [True, False, True, True, False, False, False, False, True]
    assert pack_correct(flags) == bytes([0b10110000, 0b10000000])
    assert pack_correct(torch.tensor(flags)) == pack_correct(np.array(flags)) == pack_correct([1, 0, 1, 1, 0, 0, 0, 0, 1])


@pytest.mark.parametrize(
    ("data", "count", "message"),
    [
        (bytes([0xFF]), 9, "1 bytes cannot hold the results of 9 images"),
        (bytes([0xFF, 0x00]), 8, "2 bytes cannot hold"),
        (bytes([0b10110001]), 4, "padding bits after image 4 are set"),
        (b"", -1, "count must be a non-negative"),
    ],
)
def test_unpack_refuses_bytes_that_do_not_fit(data: bytes, count: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        unpack_correct(data, count)


def test_pack_refuses_what_is_not_one_flag_per_image() -> None:
    with pytest.raises(ValueError, match="1-D"):
        pack_correct(np.zeros((2, 3), dtype=bool))
    with pytest.raises(ValueError, match="booleans"):
        pack_correct([0, 1, 2])


def test_standard_error_is_binomial() -> None:
    # the CPU-sized fidelity: 500 validation images at 37 % -> 2.16 points
    assert accuracy_se(0.37, 500) == pytest.approx(math.sqrt(0.37 * 0.63 / 500))
    assert 100 * accuracy_se(0.37, 500) == pytest.approx(2.159, abs=1e-3)
    assert accuracy_se(0.5, 10_000) == pytest.approx(0.005)
    assert accuracy_se(0.0, 100) == 0.0 and accuracy_se(1.0, 100) == 0.0
    assert math.isnan(accuracy_se(math.nan, 100))


def test_standard_error_matches_the_spread_of_simulated_accuracies() -> None:
    rng = np.random.default_rng(0)
    p, n = 0.37, 1000
    measured = rng.binomial(n, p, size=20_000) / n
    assert measured.std() == pytest.approx(accuracy_se(p, n), rel=0.03)


@pytest.mark.parametrize(("accuracy", "n", "message"), [(0.5, 0, "positive whole number"), (0.5, 2.5, "positive whole number"),
                                                       (37.0, 100, r"fraction in \[0, 1\]"), (-0.1, 100, "fraction")])  # fmt: skip
def test_standard_error_refuses_bad_input(accuracy: float, n: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        accuracy_se(accuracy, n)
