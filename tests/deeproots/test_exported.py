"""deeproots.load_exported with auxiliary classifiers: dropped unless asked, whether or not the file holds them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import save_file

import deeproots
from deeproots._exported import EXPORT_FORMAT, sha256_file


def _export(folder: Path, model: torch.nn.Module, state: dict[str, torch.Tensor], options: dict) -> Path:
    """Write <id>.yaml + <id>.safetensors the way search.export does (the fields load_exported reads)."""
    weights = folder / "model.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(weights))
    cost = deeproots.count_cost(model)
    record = {
        "format": EXPORT_FORMAT, "arch": model.arch, "schedule": model.schedule.to_dict(), "num_classes": 10,
        "input_size": [3, 32, 32], "weights": weights.name, "weights_sha256": sha256_file(weights),
        "model_options": options, "objectives": {"params": cost.params, "flops": cost.flops},
    }  # fmt: skip
    path = folder / "model.yaml"
    path.write_text(yaml.safe_dump(record))
    return path


@pytest.fixture(scope="module")
def trained() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = deeproots.build_model("googlenet_cifar", "root-4", aux_logits=True)
    model.train()(torch.randn(4, 3, 32, 32))  # non-trivial BatchNorm statistics
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        y = model.eval()(x)
    return model, x, y


def test_aux_weights_in_the_file_are_dropped_unless_asked(trained, tmp_path: Path) -> None:
    model, x, y = trained
    path = _export(tmp_path, model, model.state_dict(), {"aux_logits": True})
    loaded = deeproots.load_exported(path)  # the recorded cost (aux heads counted) is checked
    assert loaded.aux_heads == () and loaded.aux1 is None
    with torch.no_grad():
        assert torch.equal(loaded(x), y)
    kept = deeproots.load_exported(path, aux=True)
    assert kept.aux_heads == ("aux1", "aux2")
    assert torch.equal(kept.aux1.fc1.weight, model.aux1.fc1.weight)


def test_a_file_exported_without_aux_weights_loads_and_refuses_aux(trained, tmp_path: Path) -> None:
    model, x, y = trained
    state = {k: v for k, v in model.state_dict().items() if not k.startswith(("aux1.", "aux2."))}
    path = _export(tmp_path, model, state, {"aux_logits": True})
    with torch.no_grad():
        assert torch.equal(deeproots.load_exported(path)(x), y)
    with pytest.raises(ValueError, match=r"holds no weights for the auxiliary classifier\(s\) aux1, aux2 .*aux=False"):
        deeproots.load_exported(path, aux=True)


def test_an_export_in_an_object_store_loads_by_uri(trained, tmp_path: Path, s3) -> None:
    """An export copied to S3 (moto's server on 127.0.0.1) loads by URI through pyarrow.fs: same outputs,
    the checksum checked, a missing file named."""
    model, x, y = trained
    path = _export(tmp_path, model, model.state_dict(), {"aux_logits": True})
    bucket = s3.bucket("exports")
    client = s3.client()
    for f in (path, path.with_name("model.safetensors")):
        client.upload_file(str(f), bucket, f"nin/export/{f.name}")
    uri = s3.uri(bucket, "nin/export/model.yaml")
    loaded = deeproots.load_exported(uri)
    assert loaded.exported.source == uri and loaded.exported.path is None
    with torch.no_grad():
        assert torch.equal(loaded(x), y)
    assert deeproots.load_exported(s3.uri(bucket, "nin/export/model.safetensors")).schedule.id == model.schedule.id
    with pytest.raises(FileNotFoundError, match="no exported model at s3://exports/nin/export/other.yaml"):
        deeproots.load_exported(s3.uri(bucket, "nin/export/other.yaml"))
    client.put_object(Bucket=bucket, Key="nin/export/model.safetensors", Body=b"changed")
    with pytest.raises(ValueError, match="SHA-256 differs from the one model.yaml records"):
        deeproots.load_exported(uri)
    client.delete_object(Bucket=bucket, Key="nin/export/model.safetensors")
    with pytest.raises(FileNotFoundError, match="weights file s3://exports/nin/export/model.safetensors.* is missing"):
        deeproots.load_exported(uri)
