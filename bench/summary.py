"""Print one table of every benchmark figure and its target, from bench/results/*.json.

`make bench` runs every bench script, then this; `python bench/summary.py` alone re-prints the
table from the last results (each row names the JSON file and key it comes from).
"""
import json
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"

# (issue, what, file, path to the figure, target as text, check)
ROWS = [
    ("#3", "2,000 recipe dialogues, s", "dialogue_speed", ("recipe", "seconds"), "<= 20", lambda v: v <= 20),
    ("#3", "2,000 e-commerce dialogues, s", "dialogue_speed", ("ecommerce", "seconds"), "<= 20", lambda v: v <= 20),
    ("#4", "teacher wall / ideal (1,000 req, 100 ms, conc. 32)", "teacher_throughput", ("wall_over_ideal",),
     "<= 1.3", lambda v: v <= 1.3),
    ("#4", "teacher warm re-run: requests sent", "teacher_throughput", ("warm_requests_sent",), "0", lambda v: v == 0),
    ("#4", "teacher 30% faults: output identical", "teacher_throughput", ("fault_output_identical",), "true",
     lambda v: v is True),
    ("#5", "prepare 100k records, s", "prepare_speed", ("sizes", "100000", "seconds"), "<= 30", lambda v: v <= 30),
    ("#6", "select 100k records, s", "select_speed", ("sizes", "100000", "seconds"), "<= 60", lambda v: v <= 60),
    ("#6", "select peak RSS, GB", "select_speed", ("peak_rss_gb",), "<= 4", lambda v: v <= 4),
    ("#6", "select 100k / 10k time", "select_speed", ("ratio_100k_over_10k",), "~10 (linear)", lambda v: v <= 15),
    ("#6", "near-dup recall (100k)", "select_speed", ("sizes", "100000", "near_dup_recall"), ">= 0.95",
     lambda v: v >= 0.95),
    ("#6", "near-dup precision (100k)", "select_speed", ("sizes", "100000", "near_dup_precision"), ">= 0.99",
     lambda v: v >= 0.99),
    ("#7", "TRL / plain loop, lora, wall", "train_throughput", ("lora", "ratio_trl_over_plain"), ">= 0.9",
     lambda v: v >= 0.9),
    ("#7", "TRL / plain loop, lora, CPU time", "train_throughput", ("lora", "ratio_trl_over_plain_cpu_time"),
     ">= 0.9", lambda v: v >= 0.9),
    ("#7", "TRL / plain loop, lora, per step after the first", "train_throughput",
     ("lora", "ratio_trl_over_plain_steady"), ">= 0.9", lambda v: v >= 0.9),
    ("#7", "TRL / plain loop, full, wall", "train_throughput", ("full", "ratio_trl_over_plain"), ">= 0.9",
     lambda v: v >= 0.9),
    ("#7", "TRL / plain loop, full, CPU time", "train_throughput", ("full", "ratio_trl_over_plain_cpu_time"),
     ">= 0.9", lambda v: v >= 0.9),
    ("#7", "TRL / plain loop, full, per step after the first", "train_throughput",
     ("full", "ratio_trl_over_plain_steady"), ">= 0.9", lambda v: v >= 0.9),
    ("#7", "pad fraction, length-grouped", "train_throughput", ("pad_fraction", "group_by_length"), "<= 0.10",
     lambda v: v <= 0.10),
    ("#7", "padded / packed tokens/s", "train_throughput", ("packed_vs_padded", "speedup_padded_over_packed"),
     "(default = faster)", lambda v: v >= 1),
    ("#15", "train peak RSS, lora (default sizes), GB", "train_methods", ("lora", "peak_rss_gb"), "<= 12",
     lambda v: v <= 12),
    ("#15", "train peak RSS, qlora, GB", "train_methods", ("qlora", "peak_rss_gb"), "(measured)", lambda v: True),
    ("#15", "train peak RSS, full, GB", "train_methods", ("full", "peak_rss_gb"), "(measured)", lambda v: True),
    ("#15", "qlora / lora seconds per step", "train_methods", ("qlora", "step_over_lora"), "(measured)",
     lambda v: True),
    ("#15", "full / lora seconds per step", "train_methods", ("full", "step_over_lora"), "(measured)",
     lambda v: True),
    ("#15", "train step, LM head on labelled / every position (speedup)", "lm_head_positions",
     ("step_speedup_labelled_over_all",), "(measured)", lambda v: True),
    ("#15", "eval pass, LM head on labelled / TRL's chunked head (speedup)", "lm_head_positions",
     ("eval_speedup_labelled_over_all",), "> 1", lambda v: v > 1),
    ("#8", "batched / one-at-a-time generation", "generation_batching", ("ratio",), ">= 10", lambda v: v >= 10),
    ("#16", "local teacher server, 16 / 1 concurrent requests/s", "local_teacher",
     ("speed", "16", "speedup_over_concurrency_1"), "> 1 (batching pays)", lambda v: v > 1),
    ("#16", "server continuous / static batching, tok/s, stream of 32 at conc. 8", "local_teacher",
     ("continuous_over_static", "stream_8"), "> 1", lambda v: v > 1),
    ("#16", "usable voiced turns, json_schema", "local_teacher", ("structured", "json_schema", "usable_share"),
     "> json_object's", lambda v: v > figure("local_teacher", ("structured", "json_object", "usable_share"))),
    ("#16", "llama.cpp F32 GGUF greedy = transformers (5 prompts)", "llama_cpp_parity",
     ("f32", "summary", "greedy_equals_transformers"), "5/5", lambda v: v == "5/5"),
    ("#16", "llama.cpp Q4_1 top-1 agreement with transformers", "llama_cpp_parity",
     ("q4_1", "summary", "top1_agreement"), "(< 1: the kernels)", lambda v: True),
    ("#16", "local teacher warm re-run: requests sent", "local_teacher", ("warm_requests_sent",), "0",
     lambda v: v == 0),
]


def figure(name: str, path: tuple):
    try:
        value = json.loads((RESULTS / f"{name}.json").read_text())
        for key in path:
            value = value[key]
        return value
    except (FileNotFoundError, KeyError, json.JSONDecodeError):
        return None


def main() -> int:
    print(f"| issue | figure | value | target | ok | source |\n|---|---|---|---|---|---|")
    for issue, what, name, path, target, check in ROWS:
        value = figure(name, path)
        ok = "?" if value is None else ("yes" if check(value) else "NO")
        print(f"| {issue} | {what} | {value} | {target} | {ok} | {name}.json:{'.'.join(path)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
