"""A user's own file goes through generate (its loader) and prepare; bad rows reach the one report."""
import json
import subprocess
import sys

import yaml


def run(root, *args):
    result = subprocess.run([sys.executable, "-m", *args], cwd=root, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result


def test_alpaca_source_through_generate_and_prepare(tmp_path, root):
    data = tmp_path / "mine.jsonl"
    rows = [{"instruction": f"Name a herb number {i}", "input": "", "output": f"Basil {i}"} for i in range(6)]
    lines = [json.dumps(r) for r in rows]
    lines.insert(2, '{"instruction": "broken", ')
    data.write_text("\n".join(lines) + "\n")
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["sources"] = {"mine": {"kind": "alpaca", "path": str(data), "domain": "herbs", "allow_outside_repo": True}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    raw, rejected = tmp_path / "raw", tmp_path / "rejected"
    run(root, "stages.generate", "mine", str(data), str(raw / "mine.jsonl"), str(rejected / "mine.jsonl"),
        str(tmp_path / "gen.json"), "--params", str(tmp_path / "params.yaml"))
    records = [json.loads(line) for line in (raw / "mine.jsonl").read_text().splitlines()]
    assert len(records) == 6 and all(r["source"] == "mine" and r["domain"] == "herbs" for r in records)
    refused = [json.loads(line) for line in (rejected / "mine.jsonl").read_text().splitlines()]
    assert [(r["file"], r["line"]) for r in refused] == [(str(data), 3)]

    run(root, "stages.prepare", str(raw), str(rejected), str(tmp_path / "prepared"), str(tmp_path / "prep.json"),
        str(tmp_path / "plots"), "--params", str(tmp_path / "params.yaml"))
    metrics = json.loads((tmp_path / "prep.json").read_text())
    assert metrics["rejected"] == 1
    assert metrics["train_records"] + metrics["val_records"] + metrics["test_records"] == 6
    report = (tmp_path / "prepared" / "rejected.jsonl").read_text()
    assert f'"line": 3' in report
