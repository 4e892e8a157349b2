"""Evaluating exported models: the test set (once per weights, cached), the validation re-check, ONNX.

Each exported model is rebuilt from its files (:func:`deeproots.load_exported`), evaluated once on
the **test set** -- which the search never saw -- and once more on the validation split as a check
that the weights are the ones that scored the recorded validation accuracy. Results are cached by
the weights' SHA-256 and the data description, so exporting again only evaluates new models.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from deeproots._exported import ExportedConfig, plain

from ._locate import ExportError

__all__ = ["load_test_data", "eval_device", "evaluate_model", "export_onnx", "EvaluationCache", "VAL_TOLERANCE"]

#: Largest |recorded - re-evaluated| validation accuracy accepted silently (0.5 points: bf16 on GPU).
VAL_TOLERANCE = 0.005


def load_test_data(data: dict[str, Any], data_root: str | Path | None) -> Any:
    """The data a study trained on (its recorded ``data:`` block), for the test and validation splits.

    Raises:
        ExportError: the data cannot be loaded (naming ``--data-root`` and ``--no-test``).
    """
    from deeproots.data import load_data  # noqa: PLC0415

    d = dict(data)
    if not d:
        raise ExportError("the study records no data config; use --no-test")
    root = data_root if data_root is not None else d.get("root")
    try:
        return load_data(
            d.get("name", "cifar10"), root, subset=d.get("subset"), val_size=int(d.get("val_size", 5000)),
            seed=int(d.get("seed", 0)), download=False, **(d.get("options") or {}),
        )  # fmt: skip
    except (OSError, ValueError, ConnectionError) as e:
        where = f" (data root {root})" if root else ""
        raise ExportError(
            f"cannot load the test data{where}: {str(e).splitlines()[0]}; pass --data-root PATH, or --no-test"
        ) from None


def eval_device() -> str:
    """CUDA when available, else the CPU."""
    import torch  # noqa: PLC0415

    return "cuda" if torch.cuda.is_available() else "cpu"


def evaluate_model(model: Any, data: Any, device: str) -> dict[str, Any]:
    """Test accuracy/loss and the validation re-check of one model, with the device and seconds."""
    import torch  # noqa: PLC0415

    from deeproots.training import TrainConfig, evaluate  # noqa: PLC0415

    cfg = TrainConfig(precision="fp32")  # full precision: the check against the recorded accuracy is exact on CPU
    model = model.to(device=device, memory_format=torch.channels_last)
    start = time.perf_counter()
    test_loss, test_acc = evaluate(model, data.test, cfg, device=device)
    out = {"test_accuracy": test_acc, "test_loss": test_loss, "test_images": len(data.test)}
    if data.val is not None and len(data.val):
        _, val_acc = evaluate(model, data.val, cfg, device=device)
        out["val_accuracy_reevaluated"] = val_acc
    out["eval_device"] = device
    out["eval_seconds"] = round(time.perf_counter() - start, 2)
    return out


def export_onnx(model: Any, data: Any, path: Path, device: str) -> dict[str, Any]:
    """Write ``path`` and compare onnxruntime's logits with PyTorch's on one test batch."""
    import warnings  # noqa: PLC0415

    import numpy as np  # noqa: PLC0415
    import onnx  # noqa: PLC0415
    import onnxruntime as ort  # noqa: PLC0415
    import torch  # noqa: PLC0415

    model = model.to("cpu", memory_format=torch.contiguous_format).eval()
    images, _ = next(iter(data.test.batches(min(16, len(data.test)), device="cpu")))
    try:
        import onnxscript  # noqa: F401, PLC0415

        dynamo = True
    except ImportError:  # the TorchScript exporter needs no extra package
        dynamo = False
    tmp = path.with_name(path.name + ".tmp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notices
        kwargs: dict[str, Any] = {"input_names": ["images"], "output_names": ["logits"], "dynamo": dynamo}
        if dynamo:
            kwargs["dynamic_shapes"] = ({0: torch.export.Dim("batch")},)
        else:
            kwargs.update(opset_version=17, dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}})
        torch.onnx.export(model, (images[:1],), str(tmp), **kwargs)
    onnx.checker.check_model(onnx.load(str(tmp)))
    session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
    with torch.inference_mode():
        expected = model(images).float().numpy()
    got = session.run(None, {session.get_inputs()[0].name: images.numpy()})[0]
    diff = float(np.abs(got - expected).max())
    scale = float(np.abs(expected).max()) or 1.0
    agree = float((got.argmax(1) == expected.argmax(1)).mean())
    if diff > 1e-3 * max(1.0, scale):
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"ONNX output differs from PyTorch's by {diff:.3g} (max |logit| {scale:.3g})")
    os.replace(tmp, path)
    return {"file": path.name, "exporter": "dynamo" if dynamo else "torchscript", "opset": 17 if not dynamo else None,
            "check_batch": int(images.shape[0]), "max_abs_diff": diff, "argmax_agreement": agree}  # fmt: skip


class EvaluationCache:
    """``<export>/.evaluations.json``: test results by (weights SHA-256, data description)."""

    _KEEP = ("test_accuracy", "test_loss", "test_images", "val_accuracy_reevaluated", "eval_device", "eval_seconds")

    def __init__(self, out: Path) -> None:
        self.path = out / ".evaluations.json"
        try:
            self.entries: dict[str, Any] = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self.entries = {}

    @staticmethod
    def _key(cfg: ExportedConfig) -> str:
        return json.dumps([cfg.weights_sha256, cfg.data], sort_keys=True)

    def get(self, cfg: ExportedConfig) -> dict[str, Any] | None:
        """The cached entry (``metrics``, ``onnx``) of a model with these weights and data, or None."""
        hit = self.entries.get(self._key(cfg))
        if not hit or "test_accuracy" not in hit.get("metrics", {}):
            return None
        return hit

    def put(self, cfg: ExportedConfig) -> None:
        """Remember the test results of ``cfg`` (when it has weights and a test accuracy)."""
        if cfg.weights_sha256 and "test_accuracy" in cfg.metrics:
            self.entries[self._key(cfg)] = {"metrics": {k: cfg.metrics[k] for k in self._KEEP if k in cfg.metrics},
                                            "onnx": cfg.onnx}  # fmt: skip

    def save(self) -> None:
        """Write the cache atomically."""
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(plain(self.entries), indent=1))
        os.replace(tmp, self.path)
