"""Inter-layer covariance of conv2c and conv3a in trained NIN models: the paper's block-diagonal figure.

Ioannou et al., "Deep Roots", CVPR 2017 (arXiv 1605.06489), Section 3 / Fig. 5 ("inter-layer filter
covariance conv2c-conv3a", evaluated on the CIFAR test set). What is computed, following the
paper's definition (the thesis version spells it out, Sec. "Inter-Layer Covariance"):

* responses of conv2c (N x 192 x 16 x 16) and conv3a (N x 192 x 8 x 8) over a data split; here
  *after their ReLU* -- the feature maps the next layer sees (Caffe's in-place ReLU leaves exactly
  these in the paper's ``conv2c`` / ``conv3a`` blobs); ``--response bn`` / ``conv`` take them
  before the ReLU / before BatchNorm;
* conv3a upsampled (nearest neighbour) to conv2c's 16 x 16, so that every pixel of every image
  is one sample: X1 is 192 x M, X2 is 192 x M with M = images x 256;
* each channel centred, covariance C12 = X1 X2^T / (M - 1) (192 x 192; rows conv2c, columns conv3a),
  accumulated in float64 batch by batch;
* with ``--zca`` each layer is ZCA-whitened first, W = C^(-1/2) (= sqrt(M-1) (X X^T)^(-1/2), the
  paper's form), so the figure shows W1 C12 W2^T; eigenvalues are floored at ``--zca-eps`` times
  their mean (dead ReLU channels have zero variance) -- entries are then bounded by 1;
* ``--corrcoef`` instead divides C12 by the two channels' standard deviations (Pearson r), which
  removes the per-channel variance stripes but, unlike ZCA, not the correlations within a layer;
* shown as |C| on a 0-1 scale: divided by the panel's largest |entry| (``--scale max``, default),
  or clipped to [0, 1] as is (``--scale unit``, meaningful with ``--zca``).

conv3a with g groups reads conv2c's channels in g contiguous blocks, so a grouped model's matrix is
block-diagonal (g blocks of 192/g). The "in-block share" printed and stored next to the PNG -- the
fraction of sum |C| inside those g diagonal blocks -- makes that a number: 1/g for no structure.

Usage::

    python experiments/correlation.py --weights-dir experiments/results/weights/<budget> \\
        --schedules orig root-8 root-16 [--zca | --corrcoef] [--split test] [--images 5000]
    python experiments/correlation.py run/orig.safetensors run/root-8.safetensors --out corr.png
    python experiments/correlation.py --untrained --zca   # control: the same at initialisation

Weights are the safetensors files written by ``experiments/paper_nin.py`` (schedule id in the metadata).
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import deeproots

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_DATA_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data"
LAYERS = ("conv2c", "conv3a")  # (rows, columns) of the figure


class UsageError(Exception):
    """Bad command-line input: printed as one line, exit status 2."""


# ----------------------------------------------------------------------------- the maths
@dataclass
class CrossCovariance:
    """Streaming (co)variances of two sets of variables observed together, in float64.

    ``update(x1, x2)`` takes M x c1 and M x c2 sample rows (the same M samples); the sums give
    C12 = sum (x1 - m1)(x2 - m2)^T / (M - 1) and the two within-layer covariances for whitening.
    """

    c1: int
    c2: int
    n: int = 0
    s1: Tensor = field(init=False)
    s2: Tensor = field(init=False)
    s12: Tensor = field(init=False)
    s11: Tensor = field(init=False)
    s22: Tensor = field(init=False)

    def __post_init__(self) -> None:
        z = lambda *shape: torch.zeros(*shape, dtype=torch.float64)  # noqa: E731
        self.s1, self.s2 = z(self.c1), z(self.c2)
        self.s12, self.s11, self.s22 = z(self.c1, self.c2), z(self.c1, self.c1), z(self.c2, self.c2)

    def update(self, x1: Tensor, x2: Tensor) -> None:
        if x1.dim() != 2 or x2.dim() != 2 or x1.shape[0] != x2.shape[0]:
            raise ValueError(f"need M x c1 and M x c2 samples, got {tuple(x1.shape)} and {tuple(x2.shape)}")
        x1, x2 = x1.double(), x2.double()
        self.n += x1.shape[0]
        self.s1 += x1.sum(0)
        self.s2 += x2.sum(0)
        self.s12 += x1.T @ x2
        self.s11 += x1.T @ x1
        self.s22 += x2.T @ x2

    def _cov(self, s_ab: Tensor, s_a: Tensor, s_b: Tensor) -> Tensor:
        if self.n < 2:
            raise ValueError("need at least 2 samples")
        return (s_ab - torch.outer(s_a, s_b) / self.n) / (self.n - 1)

    def cross(self) -> Tensor:
        """C12 (c1 x c2)."""
        return self._cov(self.s12, self.s1, self.s2)

    def cov1(self) -> Tensor:
        return self._cov(self.s11, self.s1, self.s1)

    def cov2(self) -> Tensor:
        return self._cov(self.s22, self.s2, self.s2)

    def correlation(self) -> Tensor:
        """C12 divided by both channels' standard deviations (Pearson r; 0 for a dead channel)."""
        sd1, sd2 = self.cov1().diagonal().clamp_min(0).sqrt(), self.cov2().diagonal().clamp_min(0).sqrt()
        denom = torch.outer(sd1, sd2)
        return torch.where(denom > 0, self.cross() / denom.clamp_min(1e-300), torch.zeros_like(denom))

    def whitened_cross(self, eps: float = 1e-4) -> Tensor:
        """W1 C12 W2^T with W = ZCA whitening of each layer: the covariance of the whitened responses."""
        return zca_matrix(self.cov1(), eps) @ self.cross() @ zca_matrix(self.cov2(), eps).T


def zca_matrix(cov: Tensor, eps: float = 1e-4) -> Tensor:
    """ZCA whitening W = P (D + e)^(-1/2) P^T of a covariance P D P^T; e = ``eps`` x mean eigenvalue.

    ``eps`` floors near-zero eigenvalues (dead channels) so that W stays finite; with eps -> 0 it is
    the paper's W = C^(-1/2).
    """
    cov = 0.5 * (cov + cov.T)
    d, p = torch.linalg.eigh(cov)
    d = d.clamp_min(0)
    floor = eps * float(d.mean()) if float(d.mean()) > 0 else eps
    return (p * (d + floor).rsqrt()) @ p.T


def as_samples(x1: Tensor, x2: Tensor) -> tuple[Tensor, Tensor]:
    """N x c1 x H x W and N x c2 x h x w feature maps -> M x c1, M x c2 pixel samples, M = N H W.

    The smaller map is upsampled (nearest neighbour) to the larger one's size first.
    """
    if x1.shape[0] != x2.shape[0]:
        raise ValueError("feature maps of different batch sizes")
    if x2.shape[-2:] != x1.shape[-2:]:
        if x2.shape[-1] < x1.shape[-1]:
            x2 = F.interpolate(x2, size=x1.shape[-2:], mode="nearest")
        else:
            x1 = F.interpolate(x1, size=x2.shape[-2:], mode="nearest")
    return (
        x1.permute(0, 2, 3, 1).reshape(-1, x1.shape[1]),
        x2.permute(0, 2, 3, 1).reshape(-1, x2.shape[1]),
    )


def block_share(matrix: Tensor | np.ndarray, groups: int) -> float:
    """Fraction of sum |M| inside the ``groups`` equal diagonal blocks (1/groups when unstructured)."""
    m = np.abs(np.asarray(matrix, dtype=np.float64))
    r, c = m.shape
    if r % groups or c % groups:
        raise ValueError(f"a {r} x {c} matrix does not split into {groups} equal blocks")
    br, bc = r // groups, c // groups
    inside = sum(m[k * br : (k + 1) * br, k * bc : (k + 1) * bc].sum() for k in range(groups))
    total = m.sum()
    return float(inside / total) if total > 0 else float("nan")


def to_unit_scale(matrix: Tensor, scale: str = "max") -> np.ndarray:
    """|M| on a 0-1 scale: divided by its largest entry (``max``) or clipped (``unit``)."""
    a = matrix.abs().numpy()
    if scale == "max":
        top = a.max()
        return a / top if top > 0 else a
    return np.clip(a, 0.0, 1.0)


# ----------------------------------------------------------------------------- the models
def load_model(path: Path) -> tuple[nn.Module, deeproots.Schedule]:
    """A NIN built from the schedule id stored in a paper_nin.py safetensors file, weights loaded."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        state = load_file(str(path))
    except Exception as exc:  # OSError, or safetensors' own error types
        raise UsageError(f"cannot read weights {str(path)!r}: {exc}") from None
    if meta.get("arch") != "nin" or "schedule" not in meta:
        raise UsageError(f"{str(path)!r} has no NIN schedule in its metadata (written by paper_nin.py?)")
    schedule = deeproots.resolve_schedule("nin", meta["schedule"])
    num_classes = state["conv3c.weight"].shape[0]
    model = deeproots.build_model("nin", schedule, num_classes=num_classes)
    model.load_state_dict(state)
    return model.eval(), schedule


def accumulate(model: nn.Module, batches: Iterable[tuple[Tensor, Tensor]], response: str = "relu") -> CrossCovariance:
    """Run ``model`` over the batches and accumulate conv2c x conv3a (co)variances of ``response``."""
    taps: dict[str, Tensor] = {}
    hooks = []
    for layer in LAYERS:
        module = getattr(model, layer if response == "conv" else "bn" + layer[4:])
        relu = response == "relu"

        def hook(m: nn.Module, inputs: Any, out: Tensor, layer: str = layer, relu: bool = relu) -> None:
            taps[layer] = F.relu(out) if relu else out.clone()

        hooks.append(module.register_forward_hook(hook))
    acc = CrossCovariance(getattr(model, LAYERS[0]).out_channels, getattr(model, LAYERS[1]).out_channels)
    try:
        with torch.inference_mode():
            for x, _ in batches:
                model(x)
                # N x 192 x 16 x 16 and N x 192 x 8 x 8 -> (N*256) x 192 each
                acc.update(*as_samples(taps[LAYERS[0]].float(), taps[LAYERS[1]].float()))
    finally:
        for h in hooks:
            h.remove()
    return acc


# ----------------------------------------------------------------------------- figure
def plot(panels: list[dict[str, Any]], path: Path, title: str, quantity: str = "covariance") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = len(panels)
    fig, axes = plt.subplots(1, k, figsize=(3.6 * k + 0.8, 4.1), squeeze=False)
    image = None
    for ax, p in zip(axes[0], panels):
        image = ax.imshow(p["image"], cmap="inferno", vmin=0.0, vmax=1.0, interpolation="nearest")
        g = p["conv3a_groups"]
        ax.set_title(f"{p['label']} (conv3a: {g} group{'s' if g > 1 else ''})", fontsize=9)
        ax.set_xlabel("conv3a filter", fontsize=8)
        ax.set_ylabel("conv2c filter", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_xticks([0, 63, 127, 191])
        ax.set_yticks([0, 63, 127, 191])
    fig.colorbar(image, ax=axes[0].tolist(), fraction=0.02, pad=0.02, label=f"|{quantity}| (0-1 scale)")
    fig.suptitle(title, fontsize=9)
    fig.savefig(path, dpi=130, bbox_inches="tight")
    plt.close(fig)
    shrink_png(path)


def shrink_png(path: Path) -> None:
    """Re-save a figure as a 256-colour palette PNG (a third of the size; no visible change)."""
    from PIL import Image

    with Image.open(path) as im:
        small = im.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT)
    small.save(path, optimize=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Example: python experiments/correlation.py --weights-dir experiments/results/weights/<budget> --zca",
    )  # fmt: skip
    p.add_argument("weights", nargs="*", type=Path, help="safetensors files (instead of --weights-dir/--schedules)")
    p.add_argument("--weights-dir", type=Path, help="folder of <schedule>_seed<k>.safetensors (paper_nin.py output)")
    p.add_argument("--schedules", nargs="+", default=["orig", "root-8", "root-16"], help="panels, left to right")
    p.add_argument("--seed", type=int, default=0, help="which seed's weights (default 0)")
    p.add_argument("--untrained", action="store_true",
                   help="control: freshly initialised models (torch seed --seed) instead of trained weights")  # fmt: skip
    p.add_argument("--split", choices=("test", "val"), default="test", help="data split (the paper: test)")
    p.add_argument("--images", type=int, help="first N images of the split (default: all)")
    p.add_argument("--response", choices=("relu", "bn", "conv"), default="relu",
                   help="after the ReLU (default), after BatchNorm, or the raw conv output")  # fmt: skip
    p.add_argument("--zca", action="store_true", help="ZCA-whiten each layer's responses first")
    p.add_argument("--corrcoef", action="store_true", help="Pearson correlation instead of covariance")
    p.add_argument("--zca-eps", type=float, default=1e-4, help="eigenvalue floor, as a fraction of the mean one")
    p.add_argument("--scale", choices=("max", "unit"), default="max", help="0-1 scale: /panel max, or clip")
    p.add_argument("--batch-size", type=int, default=250)
    p.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT)
    p.add_argument("--out", type=Path, help="PNG path (default experiments/results/correlation[_zca|_corrcoef][_untrained].png)")
    args = p.parse_args(argv)
    if args.images is not None and args.images < 1:
        p.error(f"--images must be >= 1, got {args.images}")
    if args.batch_size < 1:
        p.error(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.zca and args.corrcoef:
        p.error("--zca and --corrcoef are alternatives; give one")
    if not 0 < args.zca_eps < 1:
        p.error(f"--zca-eps must be in (0, 1), got {args.zca_eps}")
    return args


def _fresh(name: str, seed: int) -> tuple[nn.Module, deeproots.Schedule]:
    try:
        schedule = deeproots.resolve_schedule("nin", name)
    except ValueError as exc:
        raise UsageError(f"schedule {name!r}: {exc}") from None
    torch.manual_seed(seed)
    return deeproots.build_model("nin", schedule).eval(), schedule


def _first(split: Any, n: int, batch_size: int) -> Iterable[tuple[Tensor, Tensor]]:
    """The first ``n`` images of a split, in order, normalised, in batches."""
    seen = 0
    for x, y in split.batches(batch_size):
        if seen >= n:
            break
        x, y = x[: n - seen], y[: n - seen]
        seen += x.shape[0]
        yield x, y


def _weight_files(args: argparse.Namespace) -> list[tuple[str, Path]]:
    if args.weights:
        return [(path.stem.split("_seed")[0], path) for path in args.weights]
    d = args.weights_dir
    if d is None:
        found = sorted(p for p in (RESULTS / "weights").glob("*") if p.is_dir())
        if len(found) != 1:
            raise UsageError(
                "give --weights-dir (one of: " + (", ".join(str(p) for p in found) or "none found") + ") or weight files"
            )
        d = found[0]
    files = []
    for name in args.schedules:
        path = d / f"{name}_seed{args.seed}.safetensors"
        if not path.exists():
            raise UsageError(f"no weights for {name} seed {args.seed}: {path} is missing (train it with paper_nin.py)")
        files.append((name, path))
    return files


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.untrained:
            models = [(f"{name} untrained", *_fresh(name, args.seed), "untrained") for name in args.schedules]
        else:
            models = [(label, *load_model(path), path) for label, path in _weight_files(args)]
        from deeproots.data import load_data

        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*differ from the official md5.*")
            try:
                data = load_data("cifar10", root=args.data_root, download=False)
            except (ValueError, FileNotFoundError, ConnectionError) as exc:
                raise UsageError(f"cannot load CIFAR-10: {exc}") from None
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    split = data.test if args.split == "test" else data.val
    n = min(args.images or len(split), len(split))

    panels, summary = [], []
    for label, model, schedule, path in models:
        acc = accumulate(model, _first(split, n, args.batch_size), args.response)
        matrix = acc.whitened_cross(args.zca_eps) if args.zca else acc.correlation() if args.corrcoef else acc.cross()
        g = schedule.groups["conv3a"]
        shares = {str(k): block_share(matrix, k) for k in sorted({2, 4, 8, g} - {1}) if 192 % k == 0}
        panels.append({"label": label, "conv3a_groups": g, "image": to_unit_scale(matrix, args.scale)})
        summary.append({
            "label": label, "schedule_id": schedule.id, "weights": str(path), "conv3a_groups": g,
            "samples": acc.n, "in_block_share": shares, "max_abs": float(matrix.abs().max()),
        })  # fmt: skip
        print(f"{label:>8} ({schedule.id}): {acc.n} samples; in-block share of |C| by block count "
              + ", ".join(f"g={k}: {v:.3f} (uniform {1 / int(k):.3f})" for k, v in shares.items()), flush=True)  # fmt: skip

    suffix = ("_zca" if args.zca else "_corrcoef" if args.corrcoef else "") + ("_untrained" if args.untrained else "")
    out = args.out or RESULTS / f"correlation{suffix}.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    what = "ZCA-whitened " if args.zca else ""
    title = (
        f"Inter-layer {'correlation' if args.corrcoef else 'covariance'} conv2c x conv3a ({what}responses {'after ReLU' if args.response == 'relu' else args.response}"
        f", conv3a upsampled nearest to 16x16)\nCIFAR-10 {args.split}, {n} images = {n * 256:,} pixel samples; "
        f"|C| {'/ panel max' if args.scale == 'max' else 'clipped to [0, 1]'}"
    )
    plot(panels, out, title, "correlation" if args.corrcoef else "covariance")
    meta = {"args": {k: str(v) for k, v in vars(args).items()}, "images": n, "panels": summary,
            "provenance": deeproots.provenance()}  # fmt: skip
    out.with_suffix(".json").write_text(json.dumps(meta, indent=1))
    print(f"wrote {out} and {out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
