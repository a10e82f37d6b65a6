"""The model and dataset cards print exactly the run's figures, in a front matter the hub can parse."""
import json

import pytest
import yaml

from synthtune.core.config import load_params
from synthtune.core.errors import InputError
from synthtune.handover.dataset_card import dataset_card
from synthtune.handover.model_card import model_card
from synthtune.handover.run_files import RunMetrics, fmt
from tests.handover.conftest import EXPORT, MANIFEST, SCORE, TRAIN


def front(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


@pytest.fixture
def params(root):
    return load_params(root / "params.yaml")


def test_model_card_front_matter_holds_the_base_and_the_scorecard(run_dir, params):
    card = model_card(params, RunMetrics(run_dir / "metrics"), MANIFEST, EXPORT)
    meta = front(card)
    assert meta["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert meta["license"] == "apache-2.0"                       # cards.license null: the base model's
    assert meta["datasets"] == [params.cards.dataset_id]
    values = {m["name"]: m["value"] for r in meta["model-index"][0]["results"] for m in r["metrics"]}
    assert values["intent accuracy (SynTOD)"] == SCORE["tuned"]["intent_accuracy"]
    assert values["slot F1"] == SCORE["tuned"]["slot_f1"]
    assert values["document-QA BLEU"] == SCORE["tuned"]["bleu@qa_docs"]
    assert values["RAG answer cosine"] == 0.6543


def test_model_card_sections_carry_the_runs_numbers(run_dir, params):
    card = model_card(params, RunMetrics(run_dir / "metrics"), MANIFEST, EXPORT)
    for section in ("## Intended use", "## Training data", "## Training procedure", "## Evaluation",
                    "## Limitations", "## How to use"):
        assert section in card
    # training: method, steps, time, hardware, throughput, every train param
    assert "method **lora**" in card
    for value in ("959.7 s", "Test CPU, 2 threads", "119.8", "4,884,480"):
        assert value in card, value
    assert f"| train.lr | {params.train.lr} |" in card and "| train.lora.r |" in card
    # evaluation: base vs tuned vs majority and the intervals
    assert "| intent accuracy (SynTOD) | 0.0472 | 0.9134 | 0.0787 |" in card
    assert "intent accuracy [0.866, 0.955]" in card
    # data: sources and selection; loading: both ways; the pinned base
    assert "| shop_tod | dialogues | ecommerce | 299 | template | 195 |" in card
    assert "PeftModel.from_pretrained" in card and "AutoModelForCausalLM.from_pretrained" in card
    assert "sha256 `b179c952" in card and "huggingface-cli upload" in card
    assert fmt(EXPORT["max_abs_logit_diff"]) in card and "0.9921 of the probe positions" in card


def test_a_missing_metrics_file_is_one_error_naming_it(run_dir, params):
    (run_dir / "metrics/score.json").unlink()
    with pytest.raises(InputError, match=r"metrics/score\.json: not found; it is written by the score stage"):
        model_card(params, RunMetrics(run_dir / "metrics"), MANIFEST, EXPORT)


def test_dataset_card_lists_sources_rejects_curation_and_lengths(run_dir, params):
    card = dataset_card(params, RunMetrics(run_dir / "metrics"), {"train": 396, "validation": 62, "test": 54},
                        ["id", "messages"])
    meta = front(card)
    assert [f["split"] for f in meta["configs"][0]["data_files"]] == ["train", "validation", "test"]
    assert meta["license"] == "other"                           # no source declares one
    assert "| malformed_json | 5 |" in card and "| wrong_type | 2 |" in card and "empty_field" not in card
    assert "| qa_docs | docqa | manuals | data/seeds/qa_docs | template | 0123456789ab |" in card
    assert "| 46 | 10,234 | $0.0021 |" in card                   # requests, tokens, cost of qa_docs
    assert "3 near-duplicates removed" in card and "4 removed for overlapping val/test" in card
    assert "| train | 11 | 4,567 | 416 | 478 | 510 | 0 |" in card
    assert 'datasets.load_dataset("json"' in card


def test_dataset_card_stage_writes_splits_that_datasets_loads(run_dir, root, tmp_path):
    import datasets

    from stages.dataset_card import main

    rows = [{"id": f"r{i}", "messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "a"}]}
            for i in range(5)]
    prepared = run_dir / "data/prepared"
    prepared.mkdir(parents=True)
    for name, part in (("val", rows[:2]), ("test", rows[2:3])):
        (prepared / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part))
    selected = run_dir / "train.jsonl"
    selected.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = run_dir / "data/dataset"
    main([str(selected), str(prepared), str(run_dir / "metrics"), str(out), "--params", str(root / "params.yaml")])
    files = {split: str(out / f"{name}.jsonl") for split, name in
             (("train", "train"), ("validation", "validation"), ("test", "test"))}
    data = datasets.load_dataset("json", data_files=files, cache_dir=str(tmp_path / "hf"))
    assert {k: len(v) for k, v in data.items()} == {"train": 5, "validation": 2, "test": 1}
    assert data["train"][0]["messages"][1]["content"] == "a"
    assert "(5 rows)" in (out / "README.md").read_text()


def test_training_time_and_device_come_from_train_metrics(run_dir, params):
    card = model_card(params, RunMetrics(run_dir / "metrics"), MANIFEST, EXPORT)
    assert f"{TRAIN['train_seconds']} s on {TRAIN['device']}" in card
