import subprocess
import sys

import pytest

from edgeseg.cli import common, main


def test_help_lists_commands_and_imports_no_heavy_module():
    code = (
        "import sys, contextlib, io\n"
        "from edgeseg.cli import main\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out):\n"
        "    try:\n"
        "        main(['--help'])\n"
        "    except SystemExit:\n"
        "        pass\n"
        "heavy = [m for m in ('tensorflow', 'keras', 'onnxruntime', 'onnx', 'tensorrt') if m in sys.modules]\n"
        "print(heavy)\n"
        "print(out.getvalue())\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    first, rest = result.stdout.split("\n", 1)
    assert first == "[]"
    for command in ("train", "evaluate", "demo"):
        assert command in rest


def test_no_command_prints_help_and_returns_2(capsys):
    assert main([]) == 2
    assert "usage" in capsys.readouterr().out


def test_user_error_is_one_line_and_exit_1(capsys):
    assert main(["train", "--model", "compact_unet", "--data", "synthetic://"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == "edgeseg train: error: --out RUN_DIR is required"


def test_unknown_model_suggests_closest(tmp_path, capsys):
    code = main(["train", "--model", "compact_unt", "--data", "synthetic://", "--out", str(tmp_path / "r")])
    assert code == 1
    err = capsys.readouterr().err
    assert "compact_unet" in err and err.count("\n") == 1


@pytest.mark.parametrize("text, expected", [("256x128", (256, 128)), ("64", (64, 64)), ("32,48", (32, 48))])
def test_size_parser(text, expected):
    assert common.size(text) == expected


@pytest.mark.parametrize("text, expected", [("900", 900.0), ("15m", 900.0), ("1.5h", 5400.0), ("30s", 30.0)])
def test_duration_parser(text, expected):
    assert common.duration(text) == expected


@pytest.mark.parametrize("bad", ["0.5,0.5", "0.8,0.3,0.1", "a,b,c", "-0.1,0.6,0.5"])
def test_split_parser_rejects(bad):
    import argparse

    with pytest.raises(argparse.ArgumentTypeError):
        common.split(bad)


def test_key_value_parser():
    assert common.key_value("width=0.5") == ("width", 0.5)
    assert common.key_value("filters=32") == ("filters", 32)
    assert common.key_value("bn=false") == ("bn", False)
