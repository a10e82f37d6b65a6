"""Errors a user can cause end in one line naming the key or file, exit code 2, no traceback."""
import subprocess
import sys


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
