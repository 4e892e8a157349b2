"""The run record (search.engine.record), the resolve-once bundle and the light command line."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.search.conftest import PYTHON, ROOT, tiny


def test_constraint_values_are_relative_excess_and_only_for_set_limits() -> None:
    from search.engine.record import breaches, constraint_values

    limits = {"max_flops": 1e8, "max_params": None, "max_latency_ms": 2.0}
    costs = {"flops": 1.5e8, "params": 5e5, "latency_ms": 1.0}
    assert constraint_values(limits, costs) == {"max_flops": pytest.approx(0.5), "max_latency_ms": pytest.approx(-0.5)}
    assert breaches(limits, costs) == ["flops 150,000,000 > 100,000,000"]
    assert constraint_values({"max_latency_ms": 2.0}, {"latency_ms": float("nan")}) == {}  # not measured: no value


def test_study_meta_round_trip_and_old_studies() -> None:
    import optuna

    from search import load_space
    from search.engine.record import RecordError, StudyMeta

    space = load_space(tiny())
    study = optuna.create_study(directions=["maximize", "minimize", "minimize"])
    meta = space.study_meta("tiny", {"git_revision": "abc"})
    meta.write(study)
    back = StudyMeta.read(study)
    assert back.arch == "nin" and back.input_size == (3, 16, 16) and back.num_classes == 10
    assert back.objectives == ("val_accuracy", "flops", "params")
    assert back.train_config == space.train.to_dict() and back.fidelity_key == space.fidelity_key()
    assert back.version == meta.version and back.provenance == {"git_revision": "abc"}
    with pytest.raises(RecordError, match="no deeproots search record"):
        StudyMeta.read(optuna.create_study())


def test_resolved_space_is_resolved_once_and_identity_ignores_execution_settings() -> None:
    from search import load_space

    a = load_space(tiny())
    assert a.train.threads == 1  # a CPU trial computes on the CPUs it is given
    b = load_space(tiny(resources={"cpus_per_trial": 2}))
    assert b.train.threads == 2
    assert a.identity() == b.identity() and a.fidelity_key() == b.fidelity_key()
    c = load_space(tiny(trainer={"lr": 0.07}))
    assert a.identity() != c.identity() and a.fidelity_key() != c.fidelity_key()


def test_a_study_of_an_older_record_version_is_refused_naming_fresh(tmp_path: Path) -> None:
    import optuna

    from search import SpaceError, load_space
    from search.engine._study import plan_run

    space = load_space(tiny())
    url = f"sqlite:///{tmp_path}/study.db"
    study = optuna.create_study(study_name="tiny", storage=url, directions=["maximize", "minimize", "minimize"])
    study.set_user_attr("identity", space.identity())  # what deeproots 0.1 wrote: no record_version
    assert plan_run(space, runs_dir=tmp_path, storage=url).mode == "restart"  # nothing finished: nothing to lose
    study.add_trial(optuna.trial.create_trial(values=[0.5, 1.0, 1.0]))
    with pytest.raises(SpaceError, match="--fresh"):
        plan_run(space, runs_dir=tmp_path, storage=url)
    assert plan_run(space, runs_dir=tmp_path, storage=url, refuse=False).mode == "differs"  # a dry run reports it
    assert plan_run(space, runs_dir=tmp_path, storage=url, fresh=True).paths.study_name == "tiny-2"


def test_exported_config_reads_format_1_and_refuses_other_files(tmp_path: Path) -> None:
    import yaml

    from deeproots import ExportedConfig

    old = {"format": "deeproots-export/1", "arch": "nin", "schedule": {"id": "nin:1-1-1-8-1-1-4-1-1", "name": "root-8",
           "groups": {"conv2a": 8}}, "num_classes": 10, "input_size": [3, 32, 32], "weights": "w.safetensors",
           "training": {"epochs": 3, "lr": 0.05, "no_such_field_any_more": 1}}  # fmt: skip
    path = tmp_path / "old.yaml"
    path.write_text(yaml.safe_dump(old))
    cfg = ExportedConfig.read(path)
    assert cfg.schedule_name == "root-8" and cfg.input_size == (3, 32, 32)
    assert cfg.weights_path() == tmp_path / "w.safetensors"
    tc = cfg.train_config(epochs=7)
    assert (tc.epochs, tc.lr) == (7, 0.05)  # unknown recorded keys dropped, overrides applied
    cfg.write(tmp_path / "new.yaml")
    again = ExportedConfig.read(tmp_path / "new.yaml")
    assert again.to_dict() == cfg.to_dict()
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({"format": "something-else"}))
    with pytest.raises(ValueError, match="format 'something-else'"):
        ExportedConfig.read(tmp_path / "bad.yaml")
    (tmp_path / "bin.yaml").write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(ValueError, match="not valid YAML"):
        ExportedConfig.read(tmp_path / "bin.yaml")


def _imports_after(code: str) -> dict[str, Any]:
    script = (
        "import sys, json\n"
        f"{code}\n"
        "print(json.dumps({m: m in sys.modules for m in ('torch', 'ray', 'optuna')}))\n"
    )
    out = subprocess.run([PYTHON, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_help_and_schema_errors_import_neither_torch_nor_ray() -> None:
    code = (
        "from search.run import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "assert main(['spaces/nin.yaml', '--set', 'search.sampler=annealing']) == 2\n"
    )
    assert _imports_after(code) == {"torch": False, "ray": False, "optuna": False}


def test_an_error_that_needs_the_architecture_does_not_import_ray() -> None:
    code = "from search.run import main\nassert main(['spaces/nin.yaml', '--set', 'groups.0.layers=conv9z']) == 2\n"
    found = _imports_after(code)
    assert found["torch"] and not found["ray"]


def test_ray_starts_its_own_local_instance_unless_an_address_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    import ray

    from search.runner import _driver

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kw: calls.append(kw))
    _driver._ray_init(None)
    _driver._ray_init("10.0.0.1:6379")
    assert [c["address"] for c in calls] == ["local", "10.0.0.1:6379"]


def test_a_constrained_study_exports(tmp_path: Path) -> None:
    """Exporting a study whose trials carry constraint values (Optuna 5: a dict per trial)."""
    from tests.search.export_support import SPACE, make_run

    from search.export import export_run

    space = json.loads(json.dumps(SPACE))
    space["constraints"] = {"max_params": 6.0e5}  # orig NIN (967k) breaks it, root-8 (315k) meets it
    run = make_run(tmp_path / "runs", name="constrained", trials=5, space=space)
    result = export_run(run, dashboard=False, test=False, print_fn=lambda *_: None)
    assert result.configs and all(c.objectives["params"] <= 6.0e5 for c in result.configs)
    assert (run / "export" / "hypervolume.png").is_file()


def test_the_datas_identity_is_its_content_not_its_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    from search import load_space
    from tests.deeproots.test_data import _write_cifar
    from tests.search.test_config import _with_data

    monkeypatch.setenv("DEEPROOTS_CACHE", str(tmp_path / "cache"))
    _write_cifar(tmp_path / "a" / "cifar-10-batches-py")
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    a = load_space(_with_data({"name": "cifar10", "root": str(tmp_path / "a"), "val_size": 20}))
    b = load_space(_with_data({"name": "cifar10", "root": str(tmp_path / "b"), "val_size": 20}))
    assert a.data["fingerprint"] and a.data["fingerprint"] == b.data["fingerprint"]
    assert a.identity() == b.identity() and a.fidelity_key() == b.fidelity_key()  # another copy: resume
    (tmp_path / "b" / "cifar-10-batches-py" / "test_batch").write_bytes((tmp_path / "a" / "cifar-10-batches-py" / "data_batch_1").read_bytes())
    c = load_space(_with_data({"name": "cifar10", "root": str(tmp_path / "b"), "val_size": 20}))
    assert c.data["fingerprint"] != a.data["fingerprint"] and c.identity() != a.identity()  # other images: not
