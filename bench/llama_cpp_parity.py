"""Why llama.cpp's greedy answers differ from transformers' on the same SmolLM2 GGUF (issue 16).

The packaged GGUF (Q4_1) is served two ways: llama.cpp (llama-cpp-python) and transformers, which
dequantizes it to fp32 (`models/base`). On the same prompt their greedy answers differed. This
bench separates the candidate causes, on 5 short prompts:

1. chat template: llama-cpp-python's rendering of the GGUF's template vs `apply_chat_template`;
2. tokens / BOS: the token ids each side feeds the model;
3. sampling defaults: llama.cpp's greedy answer with its default sampler settings (repeat_penalty
   1.1, top_k 40, min_p 0.05) vs neutral ones (1.0, 0, 0);
4. arithmetic: teacher-forced logits over the same tokens (prompt + transformers' greedy answer),
   for the Q4_1 file and for an all-F32 GGUF of the very same (dequantized) weights, written here.
   If the F32 file agrees with transformers and Q4_1 does not, the quantized kernels are the cause
   (llama.cpp also quantizes activations to 8 bits for its Q4_1 matmuls).

llama-cpp-python is not a project dependency (a 4-minute source build): give its interpreter.
Run: python bench/llama_cpp_parity.py --llama-python /path/to/venv/bin/python   (~3 min)
     -> bench/results/llama_cpp_parity.json; without --llama-python (or $LLAMA_CPP_PYTHON) it skips.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PROMPTS = ["What is the capital of France?", "Name the three primary colors.", "How many legs does a spider have?",
           "Write one sentence about the sea.", "What is 12 plus 7?"]
MAX_NEW = 48

# Runs under the llama-cpp-python interpreter: renders, tokenizes, generates and scores each prompt.
WORKER = r'''
import json, sys
import numpy as np
from llama_cpp import Llama
from llama_cpp.llama_chat_format import Jinja2ChatFormatter
model_path, jobs_path, out_dir = sys.argv[1:4]
jobs = json.load(open(jobs_path))
llm = Llama(model_path=model_path, n_ctx=1024, n_threads=2, logits_all=True, verbose=False, seed=0)
meta = llm.metadata
fmt = Jinja2ChatFormatter(template=meta["tokenizer.chat_template"],
                          eos_token=llm.detokenize([llm.token_eos()]).decode(),
                          bos_token=llm.detokenize([llm.token_bos()]).decode())
results = []
for i, job in enumerate(jobs):
    messages = [{"role": "user", "content": job["prompt"]}]
    rendered = fmt(messages=messages).prompt
    ids = llm.tokenize(rendered.encode(), add_bos=meta.get("tokenizer.ggml.add_bos_token") == "true", special=True)
    answers = {}
    for name, kw in {"default": {}, "neutral": dict(repeat_penalty=1.0, top_k=0, min_p=0.0, top_p=1.0)}.items():
        llm.reset()
        out = llm.create_chat_completion(messages=messages, temperature=0.0, max_tokens=job["max_new"], **kw)
        answers[name] = out["choices"][0]["message"]["content"]
    llm.reset()
    forced = job["prompt_ids"] + job["answer_ids"]
    llm.eval(forced)
    # scores[t] is the distribution of token t+1: keep the rows that predict the answer tokens
    np.save(f"{out_dir}/logits_{i}.npy", np.asarray(llm.scores[len(job["prompt_ids"]) - 1:len(forced) - 1],
                                                   dtype=np.float32))
    results.append({"rendered": rendered, "ids": ids, "answers": answers})
json.dump(results, open(f"{out_dir}/results.json", "w"))
'''


def f32_gguf(src: Path, dst: Path) -> None:
    """The same weights as an all-F32 GGUF: every tensor dequantized, every metadata field copied."""
    import gguf

    reader = gguf.GGUFReader(str(src))
    arch = reader.fields["general.architecture"].contents()
    writer = gguf.GGUFWriter(str(dst), arch)
    for name, field in reader.fields.items():
        if name.startswith("GGUF.") or name in ("general.architecture", "general.file_type"):
            continue                                    # header fields the writer adds itself
        kind = field.types[0]
        if kind == gguf.GGUFValueType.ARRAY:
            writer.add_key_value(name, field.contents(), kind, sub_type=field.types[-1])
        else:
            writer.add_key_value(name, field.contents(), kind)
    writer.add_key_value("general.file_type", int(gguf.LlamaFileType.ALL_F32), gguf.GGUFValueType.UINT32)
    for t in reader.tensors:
        data = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        writer.add_tensor(t.name, data.reshape([int(d) for d in reversed(t.shape)]), raw_dtype=gguf.GGMLQuantizationType.F32)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def hf_side(model_dir: Path) -> list[dict]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
    jobs = []
    for prompt in PROMPTS:
        messages = [{"role": "user", "content": prompt}]
        rendered = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        ids = tok(rendered, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            out = model.generate(torch.tensor([ids]), max_new_tokens=MAX_NEW, do_sample=False)
            answer = out[0, len(ids):].tolist()
            if answer and answer[-1] == tok.eos_token_id:
                answer = answer[:-1]
            logits = model(torch.tensor([ids + answer])).logits[0, len(ids) - 1:len(ids) + len(answer) - 1]
        jobs.append({"prompt": prompt, "rendered": rendered, "prompt_ids": ids, "answer_ids": answer,
                     "answer": tok.decode(answer), "logits": logits.float().numpy(), "max_new": MAX_NEW})
    return jobs


def compare(jobs: list[dict], run: list[dict], out_dir: Path) -> dict:
    rows = []
    for i, (job, got) in enumerate(zip(jobs, run)):
        lc = np.load(out_dir / f"logits_{i}.npy")
        hf = job["logits"]
        diff = np.abs(lc - hf)
        agree = lc.argmax(-1) == hf.argmax(-1)
        first = int(np.argmin(agree)) if not agree.all() else None
        row = {"prompt": job["prompt"], "template_identical": got["rendered"] == job["rendered"],
               "token_ids_identical": got["ids"] == job["prompt_ids"],
               "mean_abs_logit_diff": round(float(diff.mean()), 4), "max_abs_logit_diff": round(float(diff.max()), 3),
               "top1_agreement": round(float(agree.mean()), 3),
               "greedy_default_equals_neutral": got["answers"]["default"] == got["answers"]["neutral"],
               "greedy_equals_transformers": got["answers"]["neutral"].strip() == job["answer"].strip(),
               "llama_cpp_answer": got["answers"]["neutral"], "transformers_answer": job["answer"]}
        if first is not None:   # how close transformers' own top two were where the argmax first differs
            top2 = np.sort(hf[first])[-2:]
            row["first_disagreement"] = {"position": first, "transformers_top2_margin": round(float(top2[1] - top2[0]), 3)}
        rows.append(row)
    keys = ("template_identical", "token_ids_identical", "greedy_default_equals_neutral", "greedy_equals_transformers")
    summary = {k: f"{sum(r[k] for r in rows)}/{len(rows)}" for k in keys}
    summary["mean_abs_logit_diff"] = round(float(np.mean([r["mean_abs_logit_diff"] for r in rows])), 4)
    summary["max_abs_logit_diff"] = max(r["max_abs_logit_diff"] for r in rows)
    summary["top1_agreement"] = round(float(np.mean([r["top1_agreement"] for r in rows])), 3)
    return {"summary": summary, "prompts": rows}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--llama-python", default=os.environ.get("LLAMA_CPP_PYTHON"),
                    help="a Python interpreter with llama-cpp-python installed")
    args = ap.parse_args(argv)
    probe = args.llama_python and subprocess.run([args.llama_python, "-c", "import llama_cpp"],
                                                 capture_output=True).returncode == 0
    if not probe:
        print("skipped: give --llama-python (or LLAMA_CPP_PYTHON) an interpreter with llama-cpp-python==0.3.36")
        return 0
    from synthtune.model.packaged import materialize_packaged, packaged_file

    name = "smollm2-135m-instruct"
    work = Path(tempfile.mkdtemp(prefix="llama-parity-"))
    q41 = packaged_file(name)
    materialize_packaged(name, work / "hf")
    jobs = hf_side(work / "hf")
    (work / "jobs.json").write_text(json.dumps([{k: v for k, v in j.items() if k != "logits"} for j in jobs]))
    f32_gguf(q41, work / "f32.gguf")
    results = {"model": name, "gguf": q41.name, "transformers_dtype": "float32", "max_new_tokens": MAX_NEW}
    for label, path in (("q4_1", q41), ("f32", work / "f32.gguf")):
        out = work / label
        out.mkdir()
        subprocess.run([args.llama_python, "-c", WORKER, str(path), str(work / "jobs.json"), str(out)], check=True)
        results[label] = compare(jobs, json.loads((out / "results.json").read_text()), out)
    dest = ROOT / "bench/results/llama_cpp_parity.json"
    dest.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    print(json.dumps({k: v["summary"] if isinstance(v, dict) else v for k, v in results.items()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
