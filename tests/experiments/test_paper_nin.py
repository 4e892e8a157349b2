"""experiments/paper_nin.py: schedule names, budget tags, errors, and a tiny end-to-end run."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from types import ModuleType

import pytest


def test_paper_expands_to_the_13_named_schedules(paper_nin: ModuleType) -> None:
    names = paper_nin.resolve_names(["paper", "root-32", "orig"])
    assert list(names)[:13] == [
        "orig", "root-2", "root-4", "root-8", "root-16", "col-2", "col-4", "col-8", "col-16",
        "tree-2", "tree-4", "tree-8", "tree-16",
    ]  # fmt: skip
    assert list(names)[13:] == ["root-32"]  # repeats dropped
    assert paper_nin.groups_text(names["root-8"]) == "1-8-4"
    assert paper_nin.groups_text(names["tree-4"]) == "1-4-8"
    assert paper_nin.family("col-16") == "col" and paper_nin.family("orig") == "orig"


def test_budget_tag_changes_with_the_recipe(paper_nin: ModuleType) -> None:
    a = paper_nin.parse_args(["--epochs", "2", "--subset", "5000"])
    b = paper_nin.parse_args(["--epochs", "2", "--subset", "5000", "--lr", "0.05"])
    c = paper_nin.parse_args(["--epochs", "2", "--subset", "5000", "--seeds", "3", "--threads", "1"])
    tag = paper_nin.budget_tag(a, paper_nin.make_config(a, 0))
    assert tag.startswith("e2-n5000-v5000-tall-")
    assert paper_nin.budget_tag(b, paper_nin.make_config(b, 0)) != tag
    assert paper_nin.budget_tag(c, paper_nin.make_config(c, 3)) == tag  # seeds and threads share a budget


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--schedules", "root-5"], "schedule 'root-5'"),
        (["--lr", "-1"], "--lr"),
        (["--data-root", "/nonexistent"], "cannot load cifar10"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    paper_nin: ModuleType, argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert paper_nin.main([*argv, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err


def test_argparse_rejects_non_positive_budgets(paper_nin: ModuleType) -> None:
    with pytest.raises(SystemExit) as exc:
        paper_nin.parse_args(["--epochs", "0"])
    assert exc.value.code == 2


@pytest.mark.slow
def test_tiny_synthetic_run_writes_table_plot_and_resumes(paper_nin: ModuleType, tmp_path: Path) -> None:
    argv = ["--dataset", "synthetic", "--epochs", "1", "--subset", "40", "--val-size", "20", "--test-size", "20",
            "--schedules", "root-16", "--out", str(tmp_path), "--no-latency", "--quiet"]  # fmt: skip
    assert paper_nin.main(argv) == 0
    rows = list(csv.DictReader((tmp_path / "paper_nin.csv").open()))
    assert [r["schedule"] for r in rows] == ["orig", "root-16"]  # orig added as the reference
    assert float(rows[1]["flops_ratio"]) < 1 and rows[1]["groups"] == "1-16-8"
    assert (tmp_path / "paper_nin.png").stat().st_size > 0
    (run_dir,) = (tmp_path / "runs").iterdir()
    record = json.loads((run_dir / "root-16_seed0.json").read_text())
    assert record["test_images"] == 20 and record["schedule_id"] == "nin:1-1-1-16-1-1-8-1-1"
    assert Path(record["weights"]).exists()
    mtime = (run_dir / "orig_seed0.json").stat().st_mtime
    assert paper_nin.main(argv) == 0  # a rerun at the same budget trains nothing
    assert (run_dir / "orig_seed0.json").stat().st_mtime == mtime
