"""The export step: YAML + safetensors per Pareto schedule, test accuracy, pareto.csv, report, plots,
``deeproots.load_exported`` round trips, bad input, re-export cache, ONNX."""

from __future__ import annotations

import csv
import json
import math
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.search.export_support import clone_run

ROOT = Path(__file__).resolve().parents[2]


def _quiet(*_: Any) -> None:
    return None


@pytest.fixture(scope="module")
def exported(template_run: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """One export shared by the tests that only read it."""
    from search.export import export_run

    run = clone_run(template_run, tmp_path_factory.mktemp("exported") / "runs" / "exp")
    return run, export_run(run, print_fn=_quiet)


def _study(run: Path) -> Any:
    import optuna

    return optuna.load_study(study_name="exp", storage=f"sqlite:///{run / 'study.db'}")


# ------------------------------------------------------------------------------------ files


def test_export_writes_one_config_and_weights_per_pareto_schedule(exported: tuple[Path, Any]) -> None:
    from search import pareto_rows

    run, result = exported
    out = run / "export"
    front = {r["schedule_id"] for r in pareto_rows(_study(run))}
    assert {r["schedule_id"] for r in result.rows} == front and front
    with open(out / "pareto.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["schedule_id"] for r in rows} == front
    for r in rows:
        assert (out / r["config"]).is_file() and (out / r["weights"]).is_file()
        assert 0.0 <= float(r["test_accuracy"]) <= 1.0
        assert int(r["flops"]) > 0 and int(r["params"]) > 0
    for name in ("report.md", "accuracy_vs_flops.png", "accuracy_vs_params.png", "hypervolume.png",
                 "accuracy_vs_flops.html", "hypervolume.html", "pareto_front.html", "plotly.min.js"):  # fmt: skip
        assert (out / name).is_file(), name
    for png in out.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_config_records_architecture_schedule_objectives_training_and_provenance(exported: tuple[Path, Any]) -> None:
    import yaml

    import deeproots
    from deeproots._exported import EXPORT_FORMAT

    run, result = exported
    study = _study(run)
    for row in result.rows:
        rec = yaml.safe_load((run / "export" / row["config"]).read_text())
        trial = study.trials[rec["search"]["trial"]]
        assert rec["format"] == EXPORT_FORMAT and rec["arch"] == "nin"
        sched = deeproots.resolve_schedule("nin", rec["schedule"]["groups"])
        assert sched.id == rec["schedule"]["id"] == trial.user_attrs["schedule_id"]
        assert list(rec["schedule"]["groups"]) == [layer.name for layer in deeproots.describe_layers("nin")]
        assert rec["objectives"] == {"val_accuracy": trial.values[0], "flops": int(trial.values[1]),
                                     "params": int(trial.values[2])}  # fmt: skip
        assert rec["input_size"] == [3, 16, 16] and rec["num_classes"] == 10
        assert rec["training"]["epochs"] == 1 and rec["training"]["batch_size"] == 16
        assert deeproots.TrainConfig(**rec["training"])  # the trainer takes it back as is
        assert rec["data"]["name"] == "synthetic" and rec["data"]["val_size"] == 32
        assert rec["provenance"]["exported_with"]["deeproots"] == deeproots.__version__
        assert rec["provenance"]["trained_with"]["deeproots_version"] == deeproots.__version__
        assert rec["search"]["study"] == "exp" and rec["search"]["outcome"] == "evaluated"
    names = {r["name"] for r in result.rows}
    seeds = {t.user_attrs["schedule_id"]: t.user_attrs["seed"] for t in study.trials if t.user_attrs.get("seed")}
    for r in result.rows:  # a paper schedule on the front carries its name
        if r["schedule_id"] in seeds:
            assert r["name"] == seeds[r["schedule_id"]]
    assert names  # (front non-empty)


def test_test_accuracy_is_recorded_next_to_validation_and_weights_reproduce_it(exported: tuple[Path, Any]) -> None:
    run, result = exported
    for cfg in result.configs:
        m = cfg.metrics
        assert 0.0 <= m["test_accuracy"] <= 1.0 and m["test_images"] == 40
        # The exported weights score the validation accuracy the search recorded (same split, CPU).
        assert m["val_accuracy_reevaluated"] == pytest.approx(m["val_accuracy"], abs=1 / 32 + 1e-9)
    report = (run / "export" / "report.md").read_text()
    assert "| schedule | paper name | val acc ± s.e. | test acc |" in report
    assert "reproduces the recorded accuracy" in report
    assert "optuna-dashboard sqlite:///" in report


# ------------------------------------------------------------------------------------ load_exported


def test_load_exported_round_trip_params_flops_and_weights(exported: tuple[Path, Any]) -> None:
    import torch
    from safetensors.torch import load_file

    import deeproots

    run, result = exported
    for row in result.rows:
        path = run / "export" / row["config"]
        model = deeproots.load_exported(path)
        rec = model.export_info
        cost = deeproots.count_cost(model, tuple(rec["input_size"]))
        assert (cost.params, cost.flops) == (rec["objectives"]["params"], rec["objectives"]["flops"])
        assert model.schedule.id == row["schedule_id"] and not model.training
        checkpoint = run / _study(run).trials[rec["search"]["trial"]].user_attrs["checkpoint"]  # relative to the run
        trial_weights = load_file(str(checkpoint / "weights.safetensors"))
        state = model.state_dict()
        assert state.keys() == trial_weights.keys()
        assert all(torch.equal(state[k], trial_weights[k]) for k in state)
        # the .safetensors path works as well
        assert deeproots.load_exported(path.with_suffix(".safetensors")).schedule.id == row["schedule_id"]


def test_load_exported_never_unpickles(exported: tuple[Path, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    import deeproots

    def refuse(*a: Any, **k: Any) -> None:
        raise AssertionError("load_exported unpickled something")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    run, result = exported
    model = deeproots.load_exported(run / "export" / result.rows[0]["config"])
    assert isinstance(model, torch.nn.Module)


def test_load_exported_rejects_changed_weights_and_costs(exported: tuple[Path, Any]) -> None:
    import yaml

    import deeproots

    run, result = exported
    path = run / "export" / result.rows[0]["config"]
    rec = yaml.safe_load(path.read_text())
    bad = path.with_name("bad.yaml")  # beside the weights it names
    bad.write_text(yaml.safe_dump({**rec, "objectives": {**rec["objectives"], "flops": rec["objectives"]["flops"] + 1}}))
    with pytest.raises(ValueError, match="flops"):
        deeproots.load_exported(bad)
    bad.write_text(yaml.safe_dump({**rec, "weights_sha256": "0" * 64}))
    with pytest.raises(ValueError, match="SHA-256"):
        deeproots.load_exported(bad)
    bad.write_text(yaml.safe_dump({k: v for k, v in rec.items() if k != "format"}))
    with pytest.raises(ValueError, match="format"):
        deeproots.load_exported(bad)
    bad.unlink()
    with pytest.raises(FileNotFoundError):
        deeproots.load_exported(run / "export" / "nope.yaml")


def test_deeproots_loads_exports_without_ray_or_optuna() -> None:
    code = (
        "import sys, deeproots; deeproots.load_exported; "
        "bad = [m for m in ('ray', 'optuna', 'optuna_dashboard') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=120)


# ------------------------------------------------------------------------------------ CLI and bad input


def _cli(args: list[str], cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "search.export", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=900)  # fmt: skip


def test_cli_exports_a_run_folder(run: Path) -> None:
    proc = _cli([str(run), "--no-dashboard", "--no-test"])  # the evaluation is tested in-process above
    assert proc.returncode == 0, proc.stderr
    assert (run / "export" / "pareto.csv").is_file()
    assert "exported Pareto set" in proc.stdout


@pytest.mark.parametrize("case", ["missing", "empty_folder", "unknown_study", "empty_study", "storage_missing"])
def test_bad_input_is_one_line_and_exit_2(case: str, run: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import optuna

    from search.export import main

    if case == "missing":
        argv = [str(tmp_path / "nope")]
    elif case == "empty_folder":
        (tmp_path / "empty").mkdir()
        argv = [str(tmp_path / "empty")]
    elif case == "unknown_study":
        argv = [str(run), "--study", "nope"]
    elif case == "empty_study":
        optuna.create_study(study_name="blank", storage=f"sqlite:///{run / 'study.db'}", directions=["maximize", "minimize"])
        argv = [str(run), "--study", "blank"]
    else:
        argv = ["--storage", f"sqlite:///{tmp_path / 'none.db'}", "--study", "x", "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    if case == "unknown_study":
        assert "'nope'" in err and "exp" in err  # names what exists
    if case == "storage_missing":
        assert not (tmp_path / "none.db").exists()  # nothing created


def test_cli_bad_input_through_python_m(tmp_path: Path) -> None:
    proc = _cli([str(tmp_path)])
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "holds no study" in proc.stderr


def test_storage_study_out_form(run: Path, tmp_path: Path) -> None:
    from search.export import main

    out = tmp_path / "elsewhere"
    argv = ["--storage", f"sqlite:///{run / 'study.db'}", "--study", "exp", "--out", str(out), "--no-dashboard"]
    assert main(argv) == 0
    assert (out / "pareto.csv").is_file() and list(out.glob("*.safetensors"))


# ------------------------------------------------------------------------------------ re-export


def test_reexport_reuses_evaluations_and_removes_stale_files(run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import search.outputs._export as ex

    first = ex.export_run(run, dashboard=False, print_fn=_quiet)
    stale = run / "export" / "nin_1-2-3.yaml"
    manifest = json.loads((run / "export" / "manifest.json").read_text())
    manifest["files"].append(stale.name)
    (run / "export" / "manifest.json").write_text(json.dumps(manifest))
    stale.write_text("old")
    monkeypatch.setattr(ex, "evaluate_model", lambda *a, **k: pytest.fail("evaluated again despite the cache"))
    monkeypatch.setattr(ex, "load_test_data", lambda *a, **k: pytest.fail("loaded the data despite the cache"))
    second = ex.export_run(run, dashboard=False, print_fn=_quiet)
    assert [r["test_accuracy"] for r in second.rows] == [r["test_accuracy"] for r in first.rows]
    assert not stale.exists()


def test_no_test_skips_the_evaluation(run: Path) -> None:
    from search.export import export_run

    result = export_run(run, test=False, dashboard=False, print_fn=_quiet)
    assert all(r["test_accuracy"] is None for r in result.rows)


# ------------------------------------------------------------------------------------ ONNX


def test_onnx_export_matches_pytorch(run: Path) -> None:
    pytest.importorskip("onnxruntime")
    from search.export import export_run

    result = export_run(run, onnx=True, dashboard=False, print_fn=_quiet)
    for cfg in result.configs:
        info = cfg.onnx
        assert (run / "export" / info["file"]).is_file()
        assert info["max_abs_diff"] < 1e-3 and info["argmax_agreement"] == 1.0


# ------------------------------------------------------------------------------------ plots


def test_hypervolume_exact_values() -> None:
    from search.outputs._plots import hypervolume

    assert hypervolume([(0.5, 0.5)], (1.0, 1.0)) == pytest.approx(0.25)
    assert hypervolume([(0.0, 0.5), (0.5, 0.0)], (1.0, 1.0)) == pytest.approx(0.75)
    assert hypervolume([(0.0, 0.5), (0.5, 0.0), (0.6, 0.6)], (1.0, 1.0)) == pytest.approx(0.75)  # dominated
    assert hypervolume([(0.5, 0.5, 0.5)], (1.0, 1.0, 1.0)) == pytest.approx(0.125)
    # two boxes in 3-D: 0.5*1*1 + 1*0.5*1 - overlap 0.5*0.5*1 = 0.75
    assert hypervolume([(0.5, 0.0, 0.0), (0.0, 0.5, 0.0)], (1.0, 1.0, 1.0)) == pytest.approx(0.75)
    assert hypervolume([(1.0, 0.0)], (1.0, 1.0)) == 0.0


def test_points_fold_duplicates_and_mark_the_front(exported: tuple[Path, Any]) -> None:
    from search.outputs._plots import collect_points

    run, result = exported
    study = _study(run)
    points = collect_points(study, {"nin:1-1-1-1-1-1-1-1-1": "orig"})
    ids = [p.schedule_id for p in points]
    assert len(ids) == len(set(ids)) == 5
    assert {p.schedule_id for p in points if p.pareto} == {r["schedule_id"] for r in result.rows}
    assert {p.label for p in points if p.label} >= {"orig", "root-8"}
    assert 0.0 < result.hypervolume < 1.0 and math.isfinite(result.hypervolume)


# ------------------------------------------------------------------------------------ results for a paper


def test_pareto_csv_has_one_unit_convention_stated_in_its_header(exported: tuple[Path, Any]) -> None:
    import yaml

    import deeproots
    from search.outputs._render import CSV_COLUMNS, CSV_UNITS

    run, result = exported
    out = run / "export"
    with open(out / "pareto.csv") as f:
        header = f.readline().strip().split(",")
        f.seek(0)
        rows = list(csv.DictReader(f))
    assert header == CSV_COLUMNS and "flops_fraction_of_orig" in header and "flops_vs_orig" not in header
    orig = deeproots.count_cost(deeproots.build_model("nin", "orig"), (3, 16, 16))
    for r in rows:
        acc, se = float(r["val_accuracy"]), float(r["val_accuracy_se"])
        assert se == pytest.approx(math.sqrt(acc * (1 - acc) / 32))  # binomial, 32 validation images
        assert 0.0 <= float(r["test_accuracy"]) <= 1.0
        # a fraction like the accuracies, not a percentage (rounded to 0.1 % in the YAML)
        assert float(r["flops_fraction_of_orig"]) == pytest.approx(int(r["flops"]) / orig.flops, abs=6e-4)
        assert float(r["params_fraction_of_orig"]) == pytest.approx(int(r["params"]) / orig.params, abs=6e-4)
        rec = yaml.safe_load((out / r["config"]).read_text())
        assert rec["metrics"]["val_accuracy_se"] == pytest.approx(se)
    report = (out / "report.md").read_text()
    assert CSV_UNITS in report
    first = rows[0]
    shown = f"{100 * float(first['val_accuracy']):.2f} ± {100 * float(first['val_accuracy_se']):.2f} %"
    assert shown in report


def _png_size(path: Path) -> tuple[int, int, float | None]:
    """(width, height, dots per inch from the pHYs chunk or None) of a PNG file."""
    import struct

    data = path.read_bytes()
    width, height = struct.unpack(">II", data[16:24])
    at = data.find(b"pHYs")
    dpi = None
    if at > 0:
        ppu_x, _, unit = struct.unpack(">IIB", data[at + 4 : at + 13])
        dpi = ppu_x * 0.0254 if unit == 1 else None
    return width, height, dpi


def test_figures_for_a_paper_svg_pdf_png_short_titles_tags_and_error_bars(exported: tuple[Path, Any], tmp_path: Path) -> None:
    from search.outputs._locate import locate_run, open_run
    from search.outputs._plots import PNG_DPI, TITLE_MAX, write_figures

    run, result = exported
    out = run / "export"
    for stem in ("accuracy_vs_flops", "accuracy_vs_params", "hypervolume"):
        assert (out / f"{stem}.pdf").read_bytes()[:5] == b"%PDF-"
        assert "<svg" in (out / f"{stem}.svg").read_text()[:2000]
        width, _, dpi = _png_size(out / f"{stem}.png")
        assert width == 7.5 * PNG_DPI >= 1500 and dpi == pytest.approx(PNG_DPI, abs=1)
    target = locate_run(run)
    figs = write_figures(open_run(target.storage_url, target.study_name, target.run_dir), tmp_path)
    front = [p for p in figs["points"] if p.pareto]
    assert front and all(p.tag for p in front)  # every front point is labelled: paper name or #trial
    for gid, fig in figs["figures"].items():
        title = fig.layout.title.text
        assert len(title) <= TITLE_MAX and "exp" not in title.lower().replace("export", ""), (gid, title)
    flops = figs["figures"]["deeproots-accuracy-vs-flops"]
    assert flops.layout.title.text == f"Accuracy vs FLOPs: {len(figs['points'])} schedules, {len(front)} on the front"
    assert {a.text for a in flops.layout.annotations} == {p.tag for p in figs["points"] if p.tag}
    trace = next(t for t in flops.data if t.name == "Pareto set (all objectives)")
    expected = [math.sqrt(p.values["val_accuracy"] * (1 - p.values["val_accuracy"]) / 32) for p in front]
    assert list(trace.error_y.array) == pytest.approx(expected)  # one standard error each


def test_export_counts_models_with_an_eta_and_the_report_and_note_share_a_stamp(run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import re

    import search.outputs._plots as plots
    from search.export import export_run

    notes: list[str] = []
    monkeypatch.setattr(plots, "attach_to_study", lambda study, figures, note=None: notes.append(note))
    lines: list[str] = []
    result = export_run(run, print_fn=lambda x: lines.append(str(x)))
    n = len(result.configs)
    counted = [line for line in lines if re.match(r"\s*\[\d+/\d+\] ", line)]
    assert n >= 2 and [re.match(r"\s*\[(\d+)/(\d+)\]", line).groups() for line in counted] == [(str(i), str(n)) for i in range(1, n + 1)]
    assert all("ETA ~" in line for line in counted[:-1]) and "ETA" not in counted[-1]
    assert any(line.strip().startswith(f"evaluating {n} model(s) on 40 test images") for line in lines)
    report = (run / "export" / "report.md").read_text()
    stamp = re.search(r"Exported \d{4}-\d\d-\d\d \d\d:\d\d:\d\d by deeproots \S+ \(git [^)]*\)", report)
    assert stamp and len(notes) == 1 and stamp.group(0) in notes[0]


# ------------------------------------------------------------------------------------ retrain


def test_retrain_an_exported_config_over_seeds(exported: tuple[Path, Any], capsys: pytest.CaptureFixture) -> None:
    from deeproots.train import main

    run, result = exported
    row = result.rows[0]
    argv = ["--config", str(run / "export" / row["config"]), "--epochs", "1", "--seeds", "2", "--json", "--threads", "1"]
    assert main(argv) == 0
    doc = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert doc["summary"]["seeds"] == [0, 1] and doc["summary"]["test_accuracy"]["n"] == 2
    for r in doc["runs"]:
        assert r["schedule"] == row["schedule_id"] and r["flops"] == row["flops"] and r["params"] == row["params"]
        assert r["val_size"] == 32 and r["train_images"] == 64 - 32  # the whole training split, not the search's 16
        assert r["data"]["seed"] == 0  # the recorded validation split for every training seed
        assert r["exported"]["test_accuracy"] == row["test_accuracy"]
    assert [r["config"]["seed"] for r in doc["runs"]] == [0, 1]


def test_retrain_config_bad_input(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    from deeproots.train import main

    assert main(["--config", str(tmp_path / "none.yaml")]) == 2
    assert main(["--config", str(tmp_path / "none.yaml"), "--arch", "nin"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("python -m deeproots.train: error:") for line in err)


# ------------------------------------------------------------------------------------ end to end


@pytest.mark.slow
def test_search_run_exports_at_the_end(tmp_path: Path) -> None:
    """A real (tiny, synthetic) ``python -m search.run``: Ray trials, then the export step."""
    import os

    import yaml

    import deeproots
    from tests.search.export_support import SPACE

    space = json.loads(json.dumps(SPACE))
    space["search"]["trials"] = 3
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump({**space, "name": "e2e"}))
    proc = subprocess.run([sys.executable, "-m", "search.run", str(path), "--runs-dir", "runs", "--no-estimate"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, start_new_session=True)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    out = tmp_path / "runs" / "e2e" / "export"
    assert "exported Pareto set" in proc.stdout and "optuna-dashboard sqlite:///runs/e2e/study.db" in proc.stdout
    with open(out / "pareto.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows
    for r in rows:
        model = deeproots.load_exported(out / r["config"])
        assert deeproots.count_cost(model, (3, 16, 16)).flops == int(r["flops"])
        # the trial's own weights: re-evaluating them gives the validation accuracy Ray reported
        rec = model.export_info["metrics"]
        assert rec["val_accuracy_reevaluated"] == pytest.approx(rec["val_accuracy"], abs=1 / 32 + 1e-9)
