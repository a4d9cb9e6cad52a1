"""The `mll` command line itself: every command has --help, help stays light, one --labels default."""

import subprocess
import sys

import pytest

from mll.cli import build_parser, main

COMMANDS = [
    [],
    ["sdag"],
    ["sdag", "build"],
    ["sdag", "show"],
    ["hub"],
    ["hub", "list"],
    ["hub", "show"],
    ["hub", "add"],
    ["hub", "remove"],
    ["label"],
    ["match"],
    ["eval"],
    ["solve"],
    ["data"],
    ["data", "split"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "mll")
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as e:
        main([*command, "--help"])
    assert e.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: mll {' '.join(command)}".rstrip())


def test_help_loads_no_heavy_module_and_python_m_mll_works():
    heavy = ("torch", "pandas", "mlflow", "numpy", "timm", "mll.hub.store")
    code = (
        "import sys\nfrom mll.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        f"print(sorted(m for m in {heavy!r} if m in sys.modules))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1] == "[]"
    for module in ("mll", "mll.cli"):
        r = subprocess.run(
            [sys.executable, "-m", module, "hub", "add", "--help"], capture_output=True, text=True, timeout=120
        )
        assert r.returncode == 0 and r.stdout.startswith("usage: mll hub add"), r.stderr


def test_every_labels_option_defaults_to_the_project_labels_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("MLL_ROOT", str(tmp_path))
    parser = build_parser()
    for argv in (
        ["hub", "list"],
        ["hub", "show", "m"],
        ["label"],
        ["match", "dog"],
        ["eval", "--task-dir", "t"],
        ["solve", "--classes", "a,b", "--images", "i", "--out", "o.csv"],
    ):
        assert parser.parse_args(argv).labels == tmp_path / "labels", argv
    assert parser.parse_args(["hub", "list", "--labels", "elsewhere"]).labels == "elsewhere"


def test_user_errors_are_one_line_with_exit_2(tmp_path, capsys):
    assert main(["hub", "show", "nope", "--hub", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mll: error: no model 'nope'") and err.count("\n") == 1
    assert main(["hub", "add", "x.pth", "--map", "oops", "--hub", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("mll: error: --map 'oops': expected name=synset")
