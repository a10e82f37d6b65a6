"""Errors a user can cause end in one line naming the key or file, exit code 2, no traceback."""
import subprocess
import sys

import pytest


def run(root, *args):
    return subprocess.run([sys.executable, "-m", *args], cwd=root, capture_output=True, text=True)


def test_unknown_params_key(tmp_path, root):
    params = tmp_path / "params.yaml"
    params.write_text((root / "params.yaml").read_text().replace("  n_clusters: 8", "  n_clusterz: 8"))
    result = run(root, "stages.select", "data/prepared", str(tmp_path / "o.jsonl"), str(tmp_path / "m.json"),
                 str(tmp_path / "plots"), "--params", str(params))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {params}:{_line(params, 'n_clusterz')}: select.n_clusterz: unknown key"]


def test_missing_input_file(tmp_path, root):
    result = run(root, "stages.select", str(tmp_path / "missing"), str(tmp_path / "o.jsonl"),
                 str(tmp_path / "m.json"), str(tmp_path / "plots"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == f"error: {tmp_path / 'missing' / 'train.jsonl'}: file not found"
    assert "Traceback" not in result.stderr


def test_empty_raw_folder(tmp_path, root):
    (tmp_path / "raw").mkdir()
    result = run(root, "stages.prepare", str(tmp_path / "raw"), str(tmp_path / "rejected"), str(tmp_path / "out"),
                 str(tmp_path / "m.json"), str(tmp_path / "plots"))
    assert result.returncode == 2 and "no raw JSONL files" in result.stderr
    assert "Traceback" not in result.stderr


def _line(path, needle):
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


def test_duplicate_params_key_stops_the_stage(tmp_path, root):
    params = tmp_path / "params.yaml"
    params.write_text((root / "params.yaml").read_text().replace("  n_clusters: 8", "  n_clusters: 8\n  n_clusters: 4"))
    result = run(root, "stages.select", "data/prepared", str(tmp_path / "o.jsonl"), str(tmp_path / "m.json"),
                 str(tmp_path / "plots"), "--params", str(params))
    first = _line(params, "n_clusters: 8")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {params}:{first + 1}: duplicate key 'n_clusters' in select (first at line {first})"]


# ---------------------------------------------------------------- a stage started by the wrong Python

def test_a_python_without_the_packages_stops_at_once_with_the_fix(root):
    """`python -S` has no site-packages: like a global dvc's python, it lacks torch and the rest."""
    import stages

    result = subprocess.run([sys.executable, "-S", "-m", "stages.select", "--help"], cwd=root,
                            capture_output=True, text=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: this Python ({sys.executable}) lacks torch, transformers, ")
    assert line.endswith(f": {stages.FIX}") and "synthtune" not in line.split(":")[1]   # the repo root has it
    assert "dvclive" in line     # the repo's dvclive/ output folder is no package


def test_one_hidden_package_is_named_alone(root):
    code = ("import runpy, sys; sys.modules['torch'] = None; sys.argv = ['stages.format', '--help']; "
            "runpy.run_module('stages.format', run_name='__main__', alter_sys=True)")
    result = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True)
    import stages

    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: this Python ({sys.executable}) lacks torch: {stages.FIX}"]


def test_check_interpreter_reads_no_module(capsys):
    import stages

    asked = []

    def find_spec(name):
        asked.append(name)
        return None if name in {"trl", "peft"} else type("Spec", (), {"origin": f"/site/{name}/__init__.py"})()

    with pytest.raises(SystemExit) as stop:
        stages.check_interpreter(find_spec)
    assert stop.value.code == 2 and asked == list(stages.REQUIRED)
    assert capsys.readouterr().err == f"error: this Python ({sys.executable}) lacks trl, peft: {stages.FIX}\n"
    assert stages.missing_modules(["pkg"], lambda name: type("Spec", (), {"origin": None})()) == ["pkg"]   # a bare folder
    assert stages.missing_modules(["pkg"], lambda name: (_ for _ in ()).throw(ValueError("no spec"))) == ["pkg"]
    stages.check_interpreter()    # this Python (the project's) has them all
