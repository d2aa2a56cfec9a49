"""Exit codes of `edgeseg evaluate` and `edgeseg demo`: 1 and one line on bad input, 130 on Ctrl-C.

The bad inputs are real (missing, corrupt and misplaced files) and fail before any training;
Ctrl-C is simulated by making the library function the command calls raise KeyboardInterrupt.
"""

from __future__ import annotations

import pytest

from edgeseg.cli import main
from edgeseg.spec import ModelSpec


def one_error_line(capsys, command: str) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"edgeseg {command}: error: "), err
    assert "Traceback" not in err
    return lines[0]


def test_evaluate_a_missing_model(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "absent" / "model.keras"), "--data", "synthetic://?n=4"]) == 1
    assert "no model at" in one_error_line(capsys, "evaluate")


def test_evaluate_without_data_and_without_a_training_config(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path)]) == 1
    assert "--data is required" in one_error_line(capsys, "evaluate")


def test_evaluate_a_corrupt_model_file(tmp_path, capsys):
    ModelSpec(class_names=("a", "b"), input_height=32, input_width=32).save(tmp_path / "spec.json")
    (tmp_path / "model.keras").write_bytes(b"PK\x03\x04 truncated")
    assert main(["evaluate", str(tmp_path), "--data", "synthetic://?n=4"]) == 1
    assert "is not a valid .keras file" in one_error_line(capsys, "evaluate")


def test_evaluate_a_model_without_its_spec(tmp_path, capsys):
    (tmp_path / "model.keras").write_bytes(b"")
    assert main(["evaluate", str(tmp_path), "--data", "synthetic://?n=4"]) == 1
    assert "spec.json" in one_error_line(capsys, "evaluate")


def test_evaluate_bad_flags_are_usage_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", str(tmp_path), "--subset", "everything"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'everything'" in capsys.readouterr().err


def test_demo_with_missing_data(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "demo"), "--data", f"masks:{tmp_path}/absent", "--no-progress"]) == 1
    assert "absent does not exist" in one_error_line(capsys, "demo")


def test_demo_with_a_size_the_model_cannot_take(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "demo"), "--size", "30x30", "--no-progress"]) == 1
    assert "30x30 is smaller than the 32 pixels" in one_error_line(capsys, "demo")


def test_demo_with_a_file_as_output_folder(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    for extra in ([], ["--fresh"]):
        assert main(["demo", "--out", str(blocker), "--no-progress", *extra]) == 1
        assert "is a file, not a folder" in one_error_line(capsys, "demo")
    assert blocker.read_text() == "x"


def test_demo_bad_flags_are_usage_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--out", str(tmp_path), "--episodes", "0"])
    assert exit_info.value.code == 2
    assert "must be positive" in capsys.readouterr().err


@pytest.mark.parametrize("command, module, function, extra", [
    ("evaluate", "edgeseg.train.evaluate", "evaluate", ["--data", "synthetic://?n=4"]),
    ("demo", "edgeseg.demo", "run_demo", ["--no-progress"]),
])
def test_ctrl_c_exits_130(command, module, function, extra, tmp_path, monkeypatch, capsys):
    import importlib

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(importlib.import_module(module), function, interrupted)
    target = ["--out", str(tmp_path / "demo")] if command == "demo" else [str(tmp_path)]
    assert main([command, *target, *extra]) == 130
    assert capsys.readouterr().err.strip() == f"edgeseg {command}: interrupted"
