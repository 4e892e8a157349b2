"""The maths of experiments/correlation.py on synthetic tensors: covariance, ZCA, upsampling, blocks."""

from __future__ import annotations

from types import ModuleType

import numpy as np
import pytest
import torch

import deeproots


def _block_diagonal(c: int, groups: int, gen: torch.Generator) -> torch.Tensor:
    return torch.block_diag(*[torch.randn(c // groups, c // groups, generator=gen) for _ in range(groups)])


def test_streaming_covariance_equals_numpy(correlation: ModuleType) -> None:
    gen = torch.Generator().manual_seed(0)
    x1 = torch.randn(1000, 6, generator=gen) + 3.0  # not centred: the accumulator must centre
    x2 = x1[:, :4] @ torch.randn(4, 5, generator=gen) + torch.randn(1000, 5, generator=gen)
    acc = correlation.CrossCovariance(6, 5)
    for chunk in range(0, 1000, 300):  # uneven batches
        acc.update(x1[chunk : chunk + 300], x2[chunk : chunk + 300])
    full = np.cov(np.concatenate([x1.numpy(), x2.numpy()], axis=1), rowvar=False)  # (M-1) normalised
    np.testing.assert_allclose(acc.cross().numpy(), full[:6, 6:], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(acc.cov1().numpy(), full[:6, :6], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(acc.cov2().numpy(), full[6:, 6:], rtol=1e-5, atol=1e-6)
    r = np.corrcoef(np.concatenate([x1.numpy(), x2.numpy()], axis=1), rowvar=False)
    np.testing.assert_allclose(acc.correlation().numpy(), r[:6, 6:], rtol=1e-5, atol=1e-6)


def test_zca_whitens(correlation: ModuleType) -> None:
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(5000, 8, generator=gen) @ torch.randn(8, 8, generator=gen)  # correlated channels
    acc = correlation.CrossCovariance(8, 8)
    acc.update(x, x)
    w = correlation.zca_matrix(acc.cov1(), eps=1e-9)
    np.testing.assert_allclose((w @ acc.cov1() @ w.T).numpy(), np.eye(8), atol=1e-5)
    np.testing.assert_allclose(w.numpy(), w.T.numpy(), atol=1e-10)  # ZCA: symmetric, unlike PCA whitening
    # a layer against itself, whitened: the identity -- entries of a whitened cross-covariance are <= 1
    np.testing.assert_allclose(acc.whitened_cross(eps=1e-9).numpy(), np.eye(8), atol=1e-5)


def test_zca_survives_dead_channels(correlation: ModuleType) -> None:
    x = torch.randn(500, 4)
    x[:, 2] = 0.0  # a dead ReLU channel: zero variance
    acc = correlation.CrossCovariance(4, 4)
    acc.update(x, x)
    white = acc.whitened_cross()
    assert torch.isfinite(white).all()
    assert white[2].abs().max() < 1e-6
    assert torch.equal(acc.correlation()[2], torch.zeros(4, dtype=torch.float64))


@pytest.mark.parametrize("whiten", [False, True])
def test_block_diagonal_construction_shows_up_block_diagonal(correlation: ModuleType, whiten: bool) -> None:
    c, groups, m = 48, 4, 20_000
    gen = torch.Generator().manual_seed(2)
    # X1: channels correlated within each of the 4 groups, independent across groups ...
    x1 = torch.randn(m, c, generator=gen) @ (torch.eye(c) + 0.5 * _block_diagonal(c, groups, gen))
    # ... X2 made group by group from X1's matching block, as a grouped conv does
    x2_grouped = x1 @ _block_diagonal(c, groups, gen) + 0.1 * torch.randn(m, c, generator=gen)
    x2_dense = x1 @ torch.randn(c, c, generator=gen) + 0.1 * torch.randn(m, c, generator=gen)
    shares = {}
    for name, x2 in (("grouped", x2_grouped), ("dense", x2_dense)):
        acc = correlation.CrossCovariance(c, c)
        acc.update(x1, x2)
        mat = acc.whitened_cross() if whiten else acc.cross()
        shares[name] = correlation.block_share(mat, groups)
    assert shares["grouped"] > 0.9
    assert shares["dense"] == pytest.approx(1 / groups, abs=0.1)
    unit = correlation.to_unit_scale(torch.tensor([[2.0, -1.0], [0.5, 0.0]]))
    np.testing.assert_allclose(unit, [[1.0, 0.5], [0.25, 0.0]])


def test_block_share_rejects_uneven_blocks(correlation: ModuleType) -> None:
    assert correlation.block_share(np.eye(6), 3) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="equal blocks"):
        correlation.block_share(np.eye(6), 4)


def test_samples_upsample_the_smaller_map_nearest(correlation: ModuleType) -> None:
    x1 = torch.randn(2, 3, 4, 4)
    x2 = torch.arange(2 * 5 * 2 * 2, dtype=torch.float32).reshape(2, 5, 2, 2)
    s1, s2 = correlation.as_samples(x1, x2)
    assert s1.shape == (2 * 16, 3) and s2.shape == (2 * 16, 5)
    # pixel (i, j) of the 4x4 grid takes the value of pixel (i // 2, j // 2) of the 2x2 map
    grid = s2[:16, 0].reshape(4, 4)
    assert torch.equal(grid, x2[0, 0].repeat_interleave(2, 0).repeat_interleave(2, 1))
    assert torch.equal(s1[:16, 1], x1[0, 1].reshape(-1))


@pytest.mark.parametrize("response", ["relu", "bn", "conv"])
def test_accumulate_taps_conv2c_and_conv3a(correlation: ModuleType, response: str) -> None:
    """The hooks read the responses the NIN computes: conv2c at 16x16 and conv3a at 8x8."""
    torch.manual_seed(0)
    model = deeproots.build_model("nin", "root-8").eval()
    x = torch.randn(4, 3, 32, 32)
    acc = correlation.accumulate(model, [(x, torch.zeros(4, dtype=torch.long))], response)
    with torch.no_grad():
        h = model.pool1(model._block(x, "1"))
        h = model.bn2b(model.conv2b(torch.relu(model.bn2a(model.conv2a(h))))).relu()
        c2 = {"conv": model.conv2c(h), "bn": model.bn2c(model.conv2c(h))}
        c2["relu"] = c2["bn"].relu()
        p = model.pool2(c2["relu"])
        c3 = {"conv": model.conv3a(p), "bn": model.bn3a(model.conv3a(p))}
        c3["relu"] = c3["bn"].relu()
    assert c2[response].shape[-1] == 16 and c3[response].shape[-1] == 8
    ref = correlation.CrossCovariance(192, 192)
    ref.update(*correlation.as_samples(c2[response], c3[response]))
    assert acc.n == ref.n == 4 * 16 * 16
    torch.testing.assert_close(acc.cross(), ref.cross())
