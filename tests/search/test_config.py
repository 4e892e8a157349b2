"""Space files: validation, shorthands, overrides, the CLI's exit-2 errors and --dry-run (no Ray)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from search import SpaceError, load_space
from search.run import main
from tests.search.conftest import PYTHON, ROOT, tiny

SPACES = sorted((ROOT / "spaces").glob("*.yaml"))


@pytest.mark.parametrize("path", SPACES, ids=[p.stem for p in SPACES])
def test_shipped_spaces_validate(path: Path) -> None:
    space = load_space(path, check_data=False)
    pspace = space.params
    assert space.name == path.stem
    assert pspace.size >= 2
    assert pspace.seeds, "every shipped space seeds with the paper's schedules"
    for label, values in pspace.seeds:  # seeds are points of the space
        assert pspace.values_of(pspace.groups_of(values)) == values, label


def test_nin_space_searches_every_conv() -> None:
    p = load_space(ROOT / "spaces/nin.yaml", check_data=False).params
    searched = {layer for param in p.params for layer in param.layers}
    # conv1a (3 input channels) can only take 1 group: fixed, everything else searched.
    assert searched == {f"conv{i}{c}" for i in (1, 2, 3) for c in "abc"} - {"conv1a"}
    assert dict(p.fixed) == {"conv1a": 1}
    assert p.size == 6**7 * 2
    assert len(p.seeds) == 13  # orig + root/col/tree x 4


def test_nin_spatial_is_the_papers_space() -> None:
    p = load_space(ROOT / "spaces/nin-spatial.yaml", check_data=False).params
    assert [q.name for q in p.params] == ["conv2a", "conv3a"]
    assert p.size == 36 and p.enumerable


def test_per_stage_and_per_block_shorthands() -> None:
    per_stage = load_space(ROOT / "spaces/resnet50-cifar.yaml", check_data=False).params
    assert [q.name for q in per_stage.params] == ["layer1", "layer2", "layer3", "layer4"]
    assert [len(q.layers) for q in per_stage.params] == [3, 4, 6, 3]
    per_block = load_space(ROOT / "spaces/resnet50.yaml", check_data=False).params
    assert len(per_block.params) == 16 and all(q.name.endswith(".conv2") for q in per_block.params)
    inception = load_space(ROOT / "spaces/googlenet.yaml", check_data=False).params
    assert [q.name for q in inception.params] == ["conv2", "inception3", "inception4", "inception5"]
    assert inception.params[2].choices == (1, 2, 4, 8)  # a 5x5 branch of inception4 has 24 inputs


def test_later_rules_override_and_single_choices_are_fixed() -> None:
    space = load_space(tiny(groups=[{"choices": [1, 2]}, {"layers": "conv3*", "choices": [1]}]))
    p = space.params
    assert {q.name for q in p.params} == {"conv1b", "conv1c", "conv2a", "conv2b", "conv2c"}
    assert p.fixed["conv3a"] == 1 and p.fixed["conv1a"] == 1


@pytest.mark.parametrize(
    ("groups", "key", "message"),
    [
        ([{"choices": [1, 7]}], "groups.0.choices", "7 fits no layer this rule selects (9: conv1a, conv1b, conv1c ...;"),
        ([{"choices": [1, 2, 7, 11]}], "groups.0.choices", "7, 11 fit no layer this rule selects"),
        ([{"kind": "spatial", "choices": [1, 2, 5]}], "groups.0.choices", "5 fits no layer this rule selects (3: conv1a, conv2a, conv3a;"),
        ([{"choices": [1, 2]}, {"layers": "conv3*", "choices": [1, 13]}], "groups.1.choices", "13 fits no layer this rule selects (3: conv3a"),
        ([{"tie": "all", "choices": [1, 3]}], "groups", "nothing to search: every selected layer has a single valid choice (groups.0: 3 is not valid for every layer tied by tie: all)"),
    ],
    ids=["star", "two", "spatial", "second-rule", "tie-all"],
)
def test_choices_no_selected_layer_can_take_are_named(groups: list, key: str, message: str) -> None:
    with pytest.raises(SpaceError) as e:
        load_space(tiny(groups=groups))
    assert e.value.key == key and message in str(e.value), str(e.value)
    assert "they take: 1, 2, 3, 4, 6, 8" in str(e.value) or key == "groups"


def test_schedule_round_trip_through_ordered_indices() -> None:
    p = load_space(tiny()).params  # conv2a and conv3a over [1, 2, 4]
    values = {"conv2a": 2, "conv3a": 1}  # indices: 4 and 2 groups
    assert p.choices_of(values) == {"conv2a": 4, "conv3a": 2}
    sched = p.schedule(values)
    assert sched.id == "nin:1-1-1-4-1-1-2-1-1"
    assert p.values_of(sched.groups) == values
    assert p.key(values) == (2, 1)


def test_overrides_are_parsed_as_yaml_and_validated() -> None:
    space = load_space(ROOT / "spaces/nin.yaml", ["search.trials=7", "groups.0.choices=[1, 2]", "trainer.lr=0.05",
                                                 "constraints.max_flops=2e8", "data.subset=null"], check_data=False)  # fmt: skip
    assert space.spec.search.trials == 7
    assert space.spec.groups[0].choices == [1, 2]
    assert space.spec.trainer["lr"] == 0.05
    assert space.spec.constraints.max_flops == 2e8


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("search.sampler=annealing", "search.sampler"),
        ("search.trials=0", "search.trials"),
        ("search.colour=red", "search.colour"),
        ("groups.0.layers=conv9", "groups.0.layers"),
        ("groups.0.choices=[3]", "groups.0.choices"),
        ("groups.5.choices=[1]", "groups.5"),
        ("seeds=[root-64]", "seeds.0"),
        ("seeds=[nope-2]", "seeds.0"),
        ("trainer.epochs=0", "trainer.epochs"),
        ("trainer.optimizer=adam", "trainer.optimizer"),
        ("model.arch=vgg16", "model.arch"),
        ("objectives=[flops, params]", "objectives"),
        ("data.name=mnist", "data.name"),
        ("data.root=/does/not/exist", "data.root"),
        ("data.val_size=60000", "data.val_size"),
        ("data.subset=49001", "data.subset"),  # the cpu profile's 1,000 validation images leave 49,000
        ("storage=not-a-url", "storage"),
        ("search.sampler_options={population_size: 1}", "search.sampler_options"),
        ("resources.gpus_per_trial=-1", "resources.gpus_per_trial"),
        ("search.seed=4294967296", "search.seed"),  # Optuna's samplers take 32-bit seeds
        ("data.options={augment: maybe}", "data.options.augment"),
        ("data.seed=18446744073709551616", "data.seed"),
        ("trials", "--set"),
    ],
)
def test_invalid_override_exit_2_one_line_nothing_written(
    override: str, key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    code = main([str(ROOT / "spaces/nin.yaml"), "--set", override, "--no-estimate"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert f"{key}:" in err, err
    assert list(tmp_path.iterdir()) == []


def test_invalid_space_file_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {arch: nin}\ngroups: [{choices: [1, 2]}]\n")  # no search.trials
    assert main([str(bad)]) == 2
    assert "search: required key is missing" in capsys.readouterr().err
    bad.write_text("model: [unclosed\n")
    assert main([str(bad)]) == 2
    assert "not valid YAML" in capsys.readouterr().err
    assert main([str(tmp_path / "missing.yaml")]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00", "not a UTF-8 text file (byte 0x89 at offset 0); a space file is YAML text"),
        (bytes(range(256)), "not a UTF-8 text file (byte 0x80 at offset 128)"),
        ("name: caf\u00e9\n".encode("latin-1"), "not a UTF-8 text file (byte 0xe9 at offset 9)"),
        (b"name: x\nmodel: {arch: nin}\x00\n", "not valid YAML (line 2): unacceptable character #x0000"),
        (b"PK\x03\x04\x14\x00\x00\x00\x08\x00", "not valid YAML (line 1): unacceptable character #x0003"),
    ],
    ids=["png", "all-bytes", "latin-1", "nul", "zip"],
)
def test_a_space_file_that_is_not_text_is_one_line_exit_2(
    content: bytes, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "space.yaml"
    bad.write_bytes(content)
    assert main([str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {bad}: {message}") and err.count("\n") == 1 and "Traceback" not in err
    assert main([str(tmp_path)]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path} is a folder, not a space file (e.g. spaces/nin.yaml)\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["space.yaml"]


def test_cli_process_exit_status_and_single_line(tmp_path: Path) -> None:
    proc = subprocess.run(
        [PYTHON, "-m", "search.run", str(ROOT / "spaces/nin.yaml"), "--set", "search.sampler=annealing"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
    assert "search.sampler" in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_dry_run_describes_without_writing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert main([str(ROOT / "spaces/nin-spatial.yaml"), "--dry-run", "--profile", "gpu", "--set", "trainer.epochs=1",
                 "--set", "data.subset=1000"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "distinct schedules: 36" in out
    assert "87.6M .. 222M" in out  # FLOPs range: conv2a/conv3a at 32 groups .. the original NIN
    assert "root-8" in out and "estimated run time" in out
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("data", "key", "message"),
    [
        ({"val_size": 160}, "data.val_size", "val_size=160 leaves none of the 160 training images of synthetic to train on; at most 159"),
        ({"subset": 97}, "data.subset", "subset=97 + val_size=64 exceeds the 160 training images of synthetic; subset can be at most 96"),
        ({"name": "cifar10", "val_size": 50_000}, "data.val_size", "of CIFAR-10 to train on; at most 49,999"),
        ({"name": "cifar10", "val_size": 64, "subset": 49_937}, "data.subset", "exceeds the 50,000 training images of CIFAR-10; subset can be at most 49,936"),
    ],
    ids=["synthetic-val", "synthetic-subset", "cifar-val", "cifar-subset"],
)
def test_sizes_the_data_cannot_hold_are_refused_naming_the_key(data: dict, key: str, message: str, monkeypatch) -> None:
    monkeypatch.delenv("DEEPROOTS_DATA", raising=False)
    monkeypatch.setenv("DEEPROOTS_CACHE", "/nonexistent/deeproots-cache")  # no copy at hand: CIFAR-10 as published
    with pytest.raises(SpaceError) as e:
        load_space(_with_data(data))
    assert e.value.key == key and message in str(e.value), str(e.value)
    load_space(tiny(data={"subset": 96}))  # the largest that fits


def _with_data(data: dict) -> dict:
    """The tiny space on other data (CIFAR-10 at its own 32x32 geometry)."""
    space = tiny()
    space["data"] = {**space["data"], **data}
    if data.get("name") == "cifar10":
        space["data"].pop("options")
        space["model"] = {"arch": "nin"}
    return space


def test_a_copy_at_data_root_is_counted_and_checked(tmp_path: Path, monkeypatch) -> None:
    from tests.deeproots.test_data import N_TRAIN, _write_cifar

    monkeypatch.setenv("DEEPROOTS_CACHE", str(tmp_path / "cache"))
    _write_cifar(tmp_path / "data" / "cifar-10-batches-py")
    cifar = {"name": "cifar10", "root": str(tmp_path / "data"), "val_size": 20}
    load_space(_with_data(cifar))
    with pytest.raises(SpaceError, match=f"data.subset: subset=181 \\+ val_size=20 exceeds the {N_TRAIN} training images of cifar10 in"):
        load_space(_with_data({**cifar, "subset": N_TRAIN - 19}))
    (tmp_path / "data" / "cifar-10-batches-py" / "data_batch_2").write_bytes(b"")
    with pytest.raises(SpaceError) as e:
        load_space(_with_data(cifar))
    assert str(e.value).startswith("data.root: CIFAR-10 file ") and "data_batch_2 is damaged (empty file)" in str(e.value)
    assert load_space(_with_data(cifar), check_data=False).spec.data.root == cifar["root"]  # a dry run does not read it


def test_space_error_names_key() -> None:
    with pytest.raises(SpaceError) as e:
        load_space(tiny(search={"sampler": "random", "trials": 2, "reduction_factor": 1}))
    assert e.value.key == "search.reduction_factor"


def test_the_old_asha_key_names_its_replacement() -> None:
    with pytest.raises(SpaceError) as e:
        load_space(tiny(search={"sampler": "random", "trials": 2, "asha": {"enabled": True}}))
    assert e.value.key == "search" and "search.early_stopping: none | asha | moasha" in str(e.value)
    assert "got" not in str(e.value)  # no dump of the input


def test_a_second_driver_on_the_same_study_is_refused(tmp_path: Path) -> None:
    import socket

    from search import run_search
    from search.engine._lock import StudyLock
    from search.engine._study import plan_run

    space = load_space(tiny())
    plan = plan_run(space, runs_dir=tmp_path)
    plan.paths.root.mkdir(parents=True)
    held = StudyLock.acquire(plan.paths.storage_url, "tiny")  # another driver holds the study
    try:
        with pytest.raises(SpaceError) as e:
            run_search(space, runs_dir=tmp_path, estimate=False, export=False, print_fn=lambda _: None)
        message = str(e.value)
        assert message.startswith(f"study 'tiny' in {plan.paths.storage_url} is being searched by another driver: "
                                  f"pid {os.getpid()} on host {socket.gethostname()} (since ")  # fmt: skip
        assert "\n" not in message
    finally:
        held.release()
    assert sorted(p.name for p in plan.paths.root.iterdir()) == ["study.db"]  # nothing else written


def test_the_profile_is_chosen_by_the_hardware_and_said_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    import torch

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    assert main([str(ROOT / "spaces/nin.yaml"), "--dry-run", "--no-estimate"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "profile cpu: this machine has no GPU (--profile gpu for the other one)"
    assert "search: nsga2, seed 0, no early stopping; budget 12 x 2 = 24 epochs" in out
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert main([str(ROOT / "spaces/nin.yaml"), "--dry-run", "--no-estimate"]) == 0
    assert capsys.readouterr().out.startswith("profile gpu: this machine has 1 GPU(s)")


def test_a_gpu_profile_on_a_machine_without_gpu_is_one_line_naming_the_cpu_profile(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    import torch

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    monkeypatch.setenv("DEEPROOTS_CACHE", str(tmp_path / "cache"))
    assert main([str(ROOT / "spaces/nin.yaml"), "--profile", "gpu", "--no-estimate"]) == 2
    err = capsys.readouterr().err
    assert err == "error: resources.gpus_per_trial: 0.25 GPU per trial, but this machine has no GPU; use --profile cpu\n"
    assert list(tmp_path.iterdir()) == [tmp_path / "cache"] or list(tmp_path.iterdir()) == []  # no run folder
    assert main([str(ROOT / "spaces/nin.yaml"), "--profile", "tpu"]) == 2
    assert "--profile: the space has no profile 'tpu'; its profiles: gpu, cpu" in capsys.readouterr().err


def test_profiles_are_validated_and_the_unused_one_is_not_identity(tmp_path: Path) -> None:
    doc = tiny(profiles={"cpu": {"trainer.epochs": 1}, "gpu": {"trainer.epochs": 3, "resources.gpus_per_trial": 0.5}})
    a = load_space(doc, profile="cpu")
    doc["profiles"]["gpu"]["trainer.epochs"] = 4  # editing the profile not in use
    b = load_space(doc, profile="cpu")
    assert a.identity() == b.identity() and a.train.epochs == 1 and a.profile == "cpu"
    assert load_space(doc, ["trainer.epochs=2"], profile="gpu").train.epochs == 2  # --set wins over the profile
    doc["profiles"]["gpu"]["trainer.epochz"] = 2
    with pytest.raises(SpaceError) as e:
        load_space(doc, profile="cpu")
    assert e.value.key == "profiles.gpu" and "trainer.epochz" in str(e.value)


def test_confirm_alpha_is_validated_and_not_identity() -> None:
    a = load_space(tiny(), check_data=False)
    b = load_space(tiny(), ["confirm.alpha=0.1"], check_data=False)
    assert (a.spec.confirm.alpha, b.spec.confirm.alpha) == (0.05, 0.1)
    assert a.identity() == b.identity() and a.fidelity_key() == b.fidelity_key()
    for bad in ("0", "1", "high"):
        with pytest.raises(SpaceError) as e:
            load_space(tiny(), [f"confirm.alpha={bad}"], check_data=False)
        assert e.value.key == "confirm.alpha" and "\n" not in str(e.value)
    with pytest.raises(SpaceError, match="unknown key; allowed: alpha, seeds, max_schedules, overrides"):
        load_space(tiny(), ["confirm.seed=3"], check_data=False)


@pytest.mark.parametrize(
    ("text", "key", "message"),
    [
        ("name: a\nname: b\n", "", "not valid YAML (line 2): duplicate key 'name' (first given on line 1)"),
        ("search: {trials: 2}\nsearch: {trials: 3}\n", "", "duplicate key 'search' (first given on line 1)"),
    ],
    ids=["name-twice", "block-twice"],
)
def test_a_key_given_twice_is_an_error_not_the_last_one(
    text: str, key: str, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.yaml").write_text(text)
    assert main(["s.yaml", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.yaml"]


def test_scientific_notation_is_a_number_in_files_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(tiny(trainer={"epochs": 1}, data={"subset": 90})).replace("subset: 90", "subset: 9e1"))
    space = load_space(path, ["trainer.lr=5e-2", "constraints.max_flops=1E9"], check_data=False)
    assert space.train.lr == 0.05 and space.spec.data.subset == 90 and space.spec.constraints.max_flops == 1e9
    assert load_space(path, ["description=5e-2x"], check_data=False).spec.description == "5e-2x"  # not a number: text


@pytest.mark.parametrize(
    ("override", "key"),
    [("search.trials=true", "search.trials"), ("groups.0.choices=[true,2]", "groups.0.choices"),
     ("data.subset=false", "data.subset"), ("resources.cpus_per_trial=true", "resources.cpus_per_trial"),
     ("model.input_size=[3,true,32]", "model.input_size")],
)  # fmt: skip
def test_true_and_false_are_never_taken_for_numbers(override: str, key: str) -> None:
    with pytest.raises(SpaceError, match=f"^{key}: expected a number; true/false is not one here"):
        load_space(tiny(), [override], check_data=False)


def test_a_value_of_no_member_of_a_union_names_every_member() -> None:
    with pytest.raises(SpaceError) as e:
        load_space(tiny(), ["seeds=null"], check_data=False)
    assert str(e.value) == "seeds: expected 'paper' or a list of strings (got None)"
    with pytest.raises(SpaceError, match=r"^groups\.0\.layers: expected a string or a list of strings \(got 5\)$"):
        load_space(tiny(), ["groups.0.layers=5"], check_data=False)


def test_a_profile_merges_a_nested_mapping_key_by_key(tmp_path: Path) -> None:
    doc = tiny(trainer={"epochs": 3, "batch_size": 32}, profiles={"cpu": {"trainer": {"epochs": 1}}, "flat": {"trainer.epochs": 1}})
    nested = load_space(doc, check_data=False, profile="cpu")
    flat = load_space(doc, check_data=False, profile="flat")
    assert nested.train.epochs == flat.train.epochs == 1
    assert nested.train.batch_size == flat.train.batch_size == 32  # kept, not replaced by the profile's block


def test_a_file_name_that_is_no_run_name_says_how_to_name_the_run(tmp_path: Path) -> None:
    doc = tiny()
    doc.pop("name", None)
    path = tmp_path / "with space ü.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(SpaceError, match=r"^name: the run name defaults to the file's name 'with space ü', .* add a name: key"):
        load_space(path, check_data=False)
    assert load_space(path, check_data=False, name="ok").name == "ok"
    with pytest.raises(SpaceError, match=r"^name: a run name holds letters, digits"):
        load_space(path, check_data=False, name="bad name")


def test_unknown_model_options_and_devices_are_refused_before_anything_runs() -> None:
    with pytest.raises(SpaceError, match=r"^model\.options: nin takes no option 'aux_logits'"):
        load_space(tiny(), ["model.options={aux_logits: true}"], check_data=False)
    with pytest.raises(SpaceError, match=r"^trainer\.device: 'cuda' needs resources\.gpus_per_trial > 0"):
        load_space(tiny(), ["trainer.device=cuda"], check_data=False)
    for device in ("tpu", "meta"):
        with pytest.raises(SpaceError, match=rf"^latency\.device: expected cpu, cuda or cuda:N \(got '{device}'\)"):
            load_space(tiny(), [f"latency.device={device}"], check_data=False)
    with pytest.raises(SpaceError, match=r"^search\.sampler_options: 'seed' is search\.seed's"):
        from search.engine._study import make_sampler

        make_sampler(load_space(tiny(), ["search.sampler_options={seed: 3}"], check_data=False), 4)


@pytest.mark.skipif(os.name != "posix", reason="a FIFO and /proc are POSIX")
def test_paths_that_cannot_be_read_or_written_are_one_line_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    os.mkfifo(tmp_path / "pipe.yaml")
    assert main(["pipe.yaml", "--dry-run"]) == 2
    assert capsys.readouterr().err == "error: pipe.yaml is not a regular file (a device, pipe or socket); give a space file (e.g. spaces/nin.yaml)\n"
    assert main(["a" * 300 + ".yaml", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.endswith("(305 characters): cannot be read (File name too long)\n") and err.count("\n") == 1
    space = tmp_path / "tiny.yaml"
    space.write_text(yaml.safe_dump(tiny()))
    (tmp_path / "a-file").write_text("")
    for runs_dir, reason in (("a-file", "a-file is a file, not a folder"), ("a-file/deeper", "a-file is a file, not a folder")):
        assert main([str(space), "--no-estimate", "--runs-dir", runs_dir]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: --runs-dir: cannot write the run folder {runs_dir}/tiny: {reason}"), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "pipe.yaml", "tiny.yaml"]


def test_a_folder_is_tried_for_real_and_nothing_is_left_behind(tmp_path: Path) -> None:
    from search.engine._trial_storage import folder_problem

    assert folder_problem(tmp_path / "a" / "b" / "c") is None
    assert list(tmp_path.iterdir()) == []  # the folders made to try were removed again
    (tmp_path / "f").write_text("")
    assert folder_problem(tmp_path / "f" / "x") == f"{tmp_path / 'f'} is a file, not a folder"
    if Path("/proc/self").is_dir():  # root passes os.access here; only a real mkdir says no
        assert folder_problem(Path("/proc/deeproots-test/x")) == "/proc/deeproots-test: No such file or directory"
