"""The model card: a Hugging Face-style README.md for models/merged, written from the run's own files.

The YAML front matter is what the hub indexes (base model, licence, datasets, tags and a
`model-index` holding the scorecard); the sections are what a colleague reads before using the
model. Every number is read from metrics/*.json, params.yaml and the base model's manifest: nothing
here is typed by hand, so the card can never disagree with `dvc metrics show`.
"""
from __future__ import annotations

import yaml

from synthtune.core.config import Params
from synthtune.handover.run_files import HEADLINE, RunMetrics, fmt, markdown_table, score_rows, teacher_of

MODELS = ("base", "tuned", "majority")


def _flat(prefix: str, value) -> list[tuple[str, object]]:
    if isinstance(value, dict):
        return [item for key, sub in value.items() for item in _flat(f"{prefix}.{key}", sub)]
    return [(prefix, value)]


def model_index(model_id: str, score: dict, rag: dict) -> list[dict]:
    """The `model-index` of the front matter: the tuned model's headline figures (hub schema)."""
    tuned = score.get("tuned", {})
    metrics = [{"type": kind, "name": label, "value": tuned[key]} for key, label, kind in HEADLINE
               if tuned.get(key) is not None]
    results = [{"task": {"type": "text-generation", "name": "task-oriented dialogue and document QA"},
                "dataset": {"type": "json", "name": "synthtune held-out test split", "split": "test"},
                "metrics": metrics}]
    if rag.get("tuned"):
        results.append({"task": {"type": "question-answering", "name": "retrieval-augmented answers"},
                        "dataset": {"type": "json", "name": "data/seeds/rag_questions.jsonl"},
                        "metrics": [{"type": "cosine_similarity", "name": "RAG answer cosine",
                                     "value": rag["tuned"]["cosine"]},
                                    {"type": "recall", "name": "RAG hit@k", "value": rag["tuned"]["hit_at_k"]}]})
    return [{"name": model_id, "results": results}]


def front_matter(params: Params, manifest: dict, score: dict, rag: dict) -> str:
    licence = params.cards.license or manifest.get("license") or "other"
    meta = {"library_name": "transformers", "pipeline_tag": "text-generation", "license": licence.lower(),
            "tags": list(params.cards.tags), "datasets": [params.cards.dataset_id],
            "model-index": model_index(params.cards.model_id, score, rag)}
    if manifest.get("origin"):
        meta = {"base_model": manifest["origin"], **meta}
    return "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True) + "---\n"


def _data_section(params: Params, run: RunMetrics) -> str:
    generate = run.generate(params.sources)
    prepare, select = run.stage("prepare"), run.stage("select")
    rows = []
    for name, source in params.sources.items():
        made = generate[name]
        count = RunMetrics.generated(made)
        rows.append([name, source.kind, source.domain, count, teacher_of(params, source),
                     select.get(f"selected_from_{name}")])
    table = markdown_table(["source", "kind", "domain", "generated", "teacher", "selected for training"], rows)
    return f"""## Training data

{table}

Prepared: {fmt(prepare['records_read'])} records read, {fmt(prepare['rejected'])} rejected (by reason in the
dataset card), {fmt(prepare['duplicates_removed'])} exact duplicates removed; split by dialogue into
{fmt(prepare['train_records'])} train / {fmt(prepare['val_records'])} val / {fmt(prepare['test_records'])} test.
Selected: {fmt(select['selected_records'])} of {fmt(select['pool_records'])} train records by
`{select['strategy']}` ({fmt(select.get('n_clusters'))} clusters of {select.get('embedder')} embeddings),
{fmt(select.get('near_duplicates_removed'))} near-duplicates and {fmt(select.get('contaminated_removed'))}
records overlapping val/test removed. The dataset card (`data/dataset/README.md`) has the details.
"""


def _training_section(params: Params, run: RunMetrics, manifest: dict) -> str:
    train, fmt_metrics = run.stage("train"), run.stage("format")
    settings = markdown_table(["param", "value"], [[key, str(value)] for key, value in
                                                     _flat("train", params.train.model_dump(mode="json"))])
    return f"""## Training procedure

Supervised fine-tuning with TRL's `SFTTrainer`, method **{train['method']}**, {fmt(train['trainable_params'])}
trainable of {fmt(manifest.get('n_params'))} parameters, {train['dtype']} compute,
{fmt(train['steps'])} steps ({fmt(train['epochs'])} epochs)
in {fmt(train['train_seconds'])} s on {train.get('device', 'an unrecorded device')} ({fmt(train.get('processes'))} process(es)),
{fmt(train.get('real_tokens_per_second'))} real (non-padding) tokens/s. Rows: chat template, at most
{params.format.max_length} tokens (train p50 {fmt(fmt_metrics.get('train_p50_tokens'))}, p95
{fmt(fmt_metrics.get('train_p95_tokens'))}); loss on assistant tokens only. Final train loss
{fmt(train['train_loss'])}, val loss {fmt(train.get('eval_loss'))} (best {fmt(train.get('best_eval_loss'))}
at step {fmt(train.get('best_step'))}).

<details><summary>Every train param</summary>

{settings}

</details>
"""


def _evaluation_section(run: RunMetrics) -> str:
    score, rag = run.stage("score"), run.optional("rag")
    models = [m for m in MODELS if m in score] + [m for m in score if m not in MODELS]
    rows = [[label] + [values.get(m) for m in models] for _, label, values in score_rows(score)]
    tuned = score.get("tuned", {})
    intervals = [f"{key.replace('_', ' ')} [{fmt(tuned[key + '_ci_low'])}, {fmt(tuned[key + '_ci_high'])}]"
                 for key in ("intent_accuracy", "slot_f1") if key + "_ci_low" in tuned]
    slices = sorted({k.split("@", 1)[1] for k in tuned if "@" in k})
    slice_rows = [[f"{name}"] + [tuned.get(f"{key}@{name}") for key in ("intent_accuracy", "slot_f1", "bleu", "turns")]
                  for name in slices]
    text = f"""## Evaluation

Held-out test dialogues (teacher-forced, turn by turn on the gold history); `base` is the untuned
model with the same instruction, `majority` always answers the most frequent training intent.

{markdown_table(['metric'] + models, rows)}
"""
    if intervals:
        text += f"\nTuned, bootstrap 95% intervals over test dialogues: {'; '.join(intervals)}.\n"
    if slice_rows:
        text += "\nTuned, by slice (source, or user-turn position t):\n\n" + markdown_table(
            ["slice", "intent accuracy", "slot F1", "BLEU", "turns"], slice_rows) + "\n"
    if rag:
        retrievers = sorted(k.removeprefix("hit_at_k_") for k in rag.get("tuned", {}) if k.startswith("hit_at_k_"))
        rag_rows = [[r] + [rag[m].get(f"{stat}_{r}") for m in rag for stat in ("hit_at_k", "cosine")]
                    for r in retrievers]
        header = ["retriever"] + [f"{m} {stat}" for m in rag for stat in ("hit@k", "answer cosine")]
        text += f"\nRetrieval-augmented answers ({fmt(rag['tuned'].get('questions'))} questions):\n\n" + \
            markdown_table(header, rag_rows) + "\n"
    return text


def _limits_section(params: Params, run: RunMetrics, manifest: dict) -> str:
    score = run.stage("score").get("tuned", {})
    kinds = sorted({s.kind for s in params.sources.values()})
    teachers = sorted({teacher_of(params, s) for s in params.sources.values()})
    return f"""## Limitations

- Trained and tested on synthetic data ({', '.join(kinds)}; teacher: {', '.join(teachers)}): the test split
  comes from the same generators, so its figures are in-distribution, not a measure on real users' requests.
- {fmt(score.get('turns'))} test turns: read the intervals above, not the third decimal.
- A {fmt(manifest.get('n_params'))}-parameter base: it follows the trained output format; facts outside the
  training data are not reliable. Share of tuned turns whose answer did not parse: {fmt(score.get('unparsed_rate'))}.
"""


def _use_section(params: Params, manifest: dict, export: dict) -> str:
    base = manifest.get("origin") or "models/base"
    what = ("This folder is the LoRA adapter merged into its base" if export["method"] == "lora_merged"
            else "This folder holds the fully fine-tuned weights")
    return f"""## How to use

{what} ({export['dtype']} weights, {fmt(export['weights_bytes'])} bytes). The merge was checked before saving: on {export['probe_rows']} val rows
its logits matched base+adapter within {fmt(export['max_abs_logit_diff'])} (fp32). After the cast to {export['dtype']}
the largest logit difference is {fmt(export['max_abs_logit_diff_cast'])} and the greedy next token is the same at
{fmt(export.get('top1_agreement_cast'))} of the probe positions; load with `dtype=torch.float32` where that matters.

```python
from transformers import AutoModelForCausalLM, AutoTokenizer
model = AutoModelForCausalLM.from_pretrained("{params.cards.model_id}")   # or the folder models/merged
tokenizer = AutoTokenizer.from_pretrained("{params.cards.model_id}")
messages = [{{"role": "user", "content": "I want to bake something with apples"}}]
ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt")
print(tokenizer.decode(model.generate(ids, max_new_tokens=64)[0][ids.shape[1]:], skip_special_tokens=True))
```

The adapter alone (models/tuned, for LoRA/QLoRA runs): `PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained("{base}"), "models/tuned")`.
vLLM serves the folder as is: `vllm serve models/merged`. `format.json` holds the prompt layout
(instruction, intents) the model was trained and scored with.

Publish: `huggingface-cli upload {params.cards.model_id} models/merged .`
"""


def model_card(params: Params, run: RunMetrics, manifest: dict, export: dict) -> str:
    score, rag = run.stage("score"), run.optional("rag")
    base = manifest.get("origin") or manifest.get("name", "the base model")
    intro = (f"# {params.cards.model_id}\n\n`{base}` fine-tuned by the synthtune pipeline on synthetic "
             f"task-oriented dialogues and document QA. Every figure on this card was written by the run "
             f"that produced the weights (metrics/*.json); `dvc metrics show` prints the same numbers.\n\n"
             f"## Intended use\n\nAssistant replies with intent and slot annotations for the domains it was "
             f"trained on ({', '.join(sorted({s.domain for s in params.sources.values()}))}), and answers "
             f"grounded in supplied documents. A research artefact: compare runs, do not serve end users "
             f"without an evaluation on real requests.\n\n")
    base_source = manifest.get("source", {})
    if base_source:
        intro += (f"Base weights: {base_source.get('package')}=={base_source.get('version')} "
                  f"`{base_source.get('file')}` (sha256 `{base_source.get('sha256')}`).\n\n")
    return (front_matter(params, manifest, score, rag) + "\n" + intro + _data_section(params, run) + "\n"
            + _training_section(params, run, manifest) + "\n" + _evaluation_section(run) + "\n"
            + _limits_section(params, run, manifest) + "\n" + _use_section(params, manifest, export))
