"""The dataset card: data/dataset/README.md beside the selected train set and the prepared val/test splits.

Like the model card, every figure comes from the run's files: generate metrics per source (teacher,
requests, tokens, cost), prepare (rejects by reason code, duplicates, splits), select (near-duplicates,
decontamination, clusters, quotas), format (token lengths). The prompts are identified by the hash the
generate stage recorded (synthtune.generate.sources.prompts_sha256), so two runs' cards say whether
their teacher saw the same prompts.
"""
from __future__ import annotations

import yaml

from synthtune.core.config import Params
from synthtune.handover.run_files import RunMetrics, fmt, markdown_table, teacher_of

SPLIT_FILES = {"train": "train.jsonl", "validation": "validation.jsonl", "test": "test.jsonl"}


def _licence(params: Params) -> str:
    licences = {source.license for source in params.sources.values()}
    return licences.pop().lower() if len(licences) == 1 and None not in licences else "other"


def front_matter(params: Params, rows: int) -> str:
    size = "n<1K" if rows < 1000 else "1K<n<10K" if rows < 10_000 else "10K<n<100K" if rows < 100_000 else "n>100K"
    meta = {"license": _licence(params), "task_categories": ["text-generation"], "language": ["en"],
            "tags": list(params.cards.tags), "size_categories": [size],
            "configs": [{"config_name": "default",
                         "data_files": [{"split": split, "path": file} for split, file in SPLIT_FILES.items()]}]}
    return "---\n" + yaml.safe_dump(meta, sort_keys=False) + "---\n"


def _sources_section(params: Params, run: RunMetrics) -> str:
    generate = run.generate(params.sources)
    rows = []
    for name, source in params.sources.items():
        made = generate[name]
        rows.append([name, source.kind, source.domain, source.path, teacher_of(params, source),
                     made.get("prompts_sha256", "–"), RunMetrics.generated(made),
                     made.get("teacher_requests", 0), made.get("teacher_prompt_tokens", 0) +
                     made.get("teacher_completion_tokens", 0), f"${made.get('teacher_cost_usd', 0.0):.4f}",
                     made.get("quarantined", made.get("rejected", 0)), source.license or "not declared"])
    return "## Sources and generators\n\n" + markdown_table(
        ["source", "kind", "domain", "input", "teacher", "prompts sha256", "generated", "requests", "tokens",
         "cost", "quarantined", "licence"], rows) + (
        "\n\nRequests, tokens and cost count what this run sent (cache hits are free); the template teacher "
        "runs offline and sends nothing. A licence is `sources.<name>.license` in params.yaml.\n")


def _curation_section(params: Params, run: RunMetrics) -> str:
    prepare, select, lengths = run.stage("prepare"), run.stage("select"), run.stage("format")
    rejects = [[code.removeprefix("rejected."), count] for code, count in sorted(prepare.items())
               if code.startswith("rejected.") and count]
    reject_text = markdown_table(["reason", "rows"], rejects) if rejects else "No row was rejected."
    quota = [[name.removeprefix("selected_from_"), count] for name, count in sorted(select.items())
             if name.startswith("selected_from_")]
    length_rows = [[split] + [lengths.get(f"{split}_{stat}") for stat in
                              ("examples", "tokens", "p50_tokens", "p95_tokens", "max_tokens", "truncated")]
                   for split in ("train", "val", "test")]
    return f"""## Curation

**Prepare**: {fmt(prepare['records_read'])} records read, {fmt(prepare['rejected'])} rejected with a reason
(quarantined in `data/prepared/rejected.jsonl` and `data/rejected/<source>.jsonl`),
{fmt(prepare['duplicates_removed'])} exact duplicates removed; split by group (dialogue) hash into
{fmt(prepare['train_records'])} train, {fmt(prepare['val_records'])} val, {fmt(prepare['test_records'])} test
(prepare.val_fraction {params.prepare.val_fraction}, prepare.test_fraction {params.prepare.test_fraction}).

{reject_text}

**Select** (`{select['strategy']}`, select.n_samples {params.select.n_samples}): of {fmt(select['pool_records'])}
train records, {fmt(select.get('near_duplicates_removed'))} near-duplicates removed (MinHash, Jaccard ≥
{params.select.near_dup_threshold}), {fmt(select.get('contaminated_removed'))} removed for overlapping val/test
({params.select.decontam_ngram}-grams); {fmt(select.get('n_clusters'))} {select.get('clustering')} clusters of
{select.get('embedder')} embeddings (sizes {fmt(select.get('smallest_cluster'))}–{fmt(select.get('largest_cluster'))},
entropy {fmt(select.get('cluster_size_entropy'))}); {fmt(select['selected_records'])} selected, mean pairwise
distance {fmt(select.get('mean_pairwise_distance'))} (pool {fmt(select.get('pool_mean_pairwise_distance'))}).

{markdown_table(['source', 'selected'], quota)}

**Lengths** (tokens of the base model's tokenizer, chat template applied; format.max_length {params.format.max_length}):

{markdown_table(['split', 'rows', 'tokens', 'p50', 'p95', 'max', 'truncated'], length_rows)}
"""


def dataset_card(params: Params, run: RunMetrics, split_rows: dict[str, int], fields: list[str]) -> str:
    files = ", ".join(f'"{split}": "data/dataset/{name}"' for split, name in SPLIT_FILES.items())
    return (front_matter(params, sum(split_rows.values())) + f"""
# {params.cards.dataset_id}

Synthetic supervised fine-tuning data written by the synthtune pipeline: graph-guided task-oriented
dialogues with intent and slot annotations, and document-grounded QA. `train` is the selected training
set ({fmt(split_rows['train'])} rows); `validation` ({fmt(split_rows['validation'])}) and `test`
({fmt(split_rows['test'])}) are the prepared held-out splits the model was checked and scored on.
Fields of a row: {", ".join(f"`{name}`" for name in fields)}; `messages` are role/content turns, and in
dialogues their `annotations` hold the user's intent and slots and the assistant's act.

## Load it

```python
import datasets
data = datasets.load_dataset("json", data_files={{{files}}})
# or, once published: datasets.load_dataset("{params.cards.dataset_id}")
```

""" + _sources_section(params, run) + "\n" + _curation_section(params, run) + f"""
## Publish

`huggingface-cli upload {params.cards.dataset_id} data/dataset . --repo-type dataset`
""")
