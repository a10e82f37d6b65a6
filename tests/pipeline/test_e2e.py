"""End to end: `dvc repro` of the whole DAG in a temporary copy with small params, then an experiment."""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow   # whole-pipeline test: `make test` runs it, `make test-fast` skips it


def merge(base: dict, over: dict) -> dict:
    for key, value in over.items():
        base[key] = merge(base.get(key, {}), value) if isinstance(value, dict) else value
    return base


def sh(cmd, cwd, env):
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, shell=True)
    assert result.returncode == 0, f"{cmd} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout + result.stderr


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, root):
    work = tmp_path_factory.mktemp("repo")
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=root, capture_output=True,
                           text=True, check=True).stdout.split()
    for name in files:
        if (root / name).is_file() and not name.startswith(("metrics/", "dvclive/", "plots/")):
            (work / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / name, work / name)
    (work / "dvc.lock").unlink(missing_ok=True)
    params = merge(yaml.safe_load((root / "params.yaml").read_text()),
                   yaml.safe_load((root / "configs/small.yaml").read_text()))
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "HF_HUB_OFFLINE": "1", "DVC_NO_ANALYTICS": "1", "PYTHONPATH": str(work)}
    sh("git init -q && git add -A && git -c user.name=t -c user.email=t@t commit -qm init", work, env)
    return work, env


@pytest.fixture(scope="module")
def reproduced(workspace):
    """The workspace after one `dvc repro`, and what it printed: every later test starts from a run,
    so each can also be run alone (`pytest -k handover`)."""
    work, env = workspace
    return work, env, sh("dvc repro", work, env)


def test_dvc_repro_runs_the_whole_dag(reproduced):
    work, env, out = reproduced
    ran = set(re.findall(r"Running stage '([^']+)'", out))
    sources = yaml.safe_load((work / "params.yaml").read_text())["sources"]
    assert ran == {f"generate@{name}" for name in sources} | {
        "prepare", "select", "base_model", "format", "train", "predict", "score", "judge", "rag",
        "export", "dataset_card", "report"}
    score = json.loads((work / "metrics/score.json").read_text())
    assert set(score) == {"base", "tuned", "majority"}
    for model in score.values():
        assert {"intent_accuracy", "bleu", "rouge_l"} <= set(model)
    rag = json.loads((work / "metrics/rag.json").read_text())
    assert set(rag) == {"base", "tuned"} and 0 <= rag["tuned"]["hit_at_k"] <= 1
    judge = json.loads((work / "metrics/judge.json").read_text())
    assert set(judge) == {"base", "tuned", "judge"} and judge["judge"]["judge_invalid"] == 0
    assert isinstance(judge["judge"]["judge_flagged"], bool) and judge["tuned"]["relevance_judged"] > 0
    assert (work / "dvclive/train/plots/metrics/train/loss.tsv").read_text().startswith("step\tloss")
    assert "Data and pipelines are up to date" in sh("dvc status", work, env)
    # the tuned output holds only what is the same on every machine: no pickled run args, sorted modules
    if (work / "models/tuned/adapter_config.json").exists():     # lora/qlora; full FT saves the weights
        adapter = json.loads((work / "models/tuned/adapter_config.json").read_text())
        assert adapter["target_modules"] == sorted(adapter["target_modules"])
    assert not (work / "models/tuned/training_args.bin").exists()
    assert json.loads((work / "models/tuned/format.json").read_text())["template"] == "chat"


def test_changing_train_lr_reruns_only_train_and_downstream(reproduced):
    work, env, _ = reproduced
    sh("git add -A && git -c user.name=t -c user.email=t@t commit -qm repro", work, env)
    out = sh("dvc exp run -S train.lr=0.005", work, env)
    ran = set(re.findall(r"Running stage '([^']+)'", out))
    assert ran == {"train", "predict", "score", "judge", "rag", "export", "report"}


def test_the_handover_cards_export_and_report_hold_the_runs_figures(reproduced, tmp_path):
    """What a run hands over, on the tiny preset: model card, dataset card, merged model, report page."""
    import datasets
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from synthtune.handover.run_files import fmt
    from tests.browser import is_blank, open_page

    work, _, _ = reproduced
    score = json.loads((work / "metrics/score.json").read_text())
    train = json.loads((work / "metrics/train.json").read_text())
    card = (work / "models/merged/README.md").read_text()
    meta = yaml.safe_load(card.split("---\n")[1])
    tuned = {m["name"]: m["value"] for m in meta["model-index"][0]["results"][0]["metrics"]}
    assert tuned["intent accuracy (SynTOD)"] == score["tuned"]["intent_accuracy"]
    # The card rounds as the report does (2.0 s prints as "2 s"): compare in the card's own format.
    assert f"{fmt(train['train_seconds'])} s on {train['device']}" in card
    merged = AutoModelForCausalLM.from_pretrained(str(work / "models/merged"))
    tokenizer = AutoTokenizer.from_pretrained(str(work / "models/merged"))
    assert merged(**tokenizer("hello", return_tensors="pt")).logits.dtype == torch.bfloat16
    assert json.loads((work / "metrics/export.json").read_text())["max_abs_logit_diff"] <= 1e-3
    data = datasets.load_dataset("json", cache_dir=str(tmp_path / "hf"), data_files={
        split: str(work / f"data/dataset/{split}.jsonl") for split in ("train", "validation", "test")})
    assert len(data["train"]) == len((work / "data/selected/train.jsonl").read_text().splitlines())
    assert "## Curation" in (work / "data/dataset/README.md").read_text()
    seen = open_page(work / "reports/index.html", tmp_path / "report.png")
    assert seen["errors"] == [] and seen["failed"] == [] and not is_blank(tmp_path / "report.png")
    assert len(seen["images"]) >= 6 and all(done and width > 0 for done, width, _ in seen["images"])


def test_a_teammate_pulls_and_has_nothing_to_recompute(reproduced, tmp_path):
    work, env, _ = reproduced
    remote = tmp_path / "remote"
    sh(f"dvc remote add --local -f -d local {remote}", work, env)   # the test's own remote, config untouched
    sh("dvc push --run-cache", work, env)
    for out in ("data/raw", "data/rejected", "data/prepared", "data/selected", "data/formatted",
                "data/predictions", "data/dataset", "models", "reports", ".dvc/cache"):
        shutil.rmtree(work / out, ignore_errors=True)
    sh("dvc pull --run-cache", work, env)
    assert "Data and pipelines are up to date" in sh("dvc status", work, env)
    out = sh("dvc repro", work, env)
    assert "Running stage" not in out


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_push_and_pull_through_an_s3_remote(reproduced, tmp_path):
    """The same teammate path against S3 (moto's server on loopback) with dvc-s3."""
    import boto3
    from moto.server import ThreadedMotoServer

    work, env, _ = reproduced
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        creds = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                 "AWS_DEFAULT_REGION": "us-east-1"}
        env = {**env, **creds}
        endpoint = f"http://127.0.0.1:{port}"
        boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="testing", aws_secret_access_key="testing",
                     region_name="us-east-1").create_bucket(Bucket="team-data")
        sh("dvc remote add --local -f -d s3 s3://team-data/synthtune", work, env)
        sh(f"dvc remote modify --local s3 endpointurl {endpoint}", work, env)
        sh("dvc push --run-cache", work, env)
        objects = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="testing",
                               aws_secret_access_key="testing", region_name="us-east-1").list_objects_v2(
            Bucket="team-data", Prefix="synthtune/")
        assert objects["KeyCount"] > 10
        for out in ("data/raw", "data/prepared", "data/formatted", "models", ".dvc/cache"):
            shutil.rmtree(work / out, ignore_errors=True)
        sh("dvc pull --run-cache", work, env)
        assert "Data and pipelines are up to date" in sh("dvc status", work, env)
        assert "Running stage" not in sh("dvc repro", work, env)
    finally:
        server.stop()
