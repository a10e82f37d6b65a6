"""The SynTOD relevance judge: an LLM rates each predicted reply against the gold one, 0 / 1 / 2.

SynTOD scores a response by asking an LLM, given the conversation so far, the response and the
ground-truth response, whether it is 0 (not relevant, or major issues), 1 (relevant but worse
than the ground truth) or 2 (as good as or better). Here the question goes through the teacher
layer (cached, budgeted, dry-run estimates; `score.judge_backend` hf: a local model, openai: any
OpenAI-compatible endpoint of the teacher settings) at temperature 0 with a JSON schema that
admits only {"score": 0|1|2}, on the first `score.judge_max` scored turns (in test order).

The judge is validated on every run: for each judged turn it also rates the gold reply and the
gold reply of another dialogue (a fixed rotation of the turns). `judge_pairwise_accuracy` is the
share of turns where the gold reply scores strictly above the foreign one; below
`score.judge_min_accuracy` the judge cannot tell replies apart and `judge_flagged` is true (the
scorecard and report say so). An answer that is not 0/1/2 is counted (`relevance_invalid`) and
left out of the mean, never guessed.
"""
from __future__ import annotations

import json
from collections.abc import Sequence

from synthtune.evaluate.predict import eval_turns, turn_id

JUDGE_SCHEMA = {"type": "object", "properties": {"score": {"type": "integer", "enum": [0, 1, 2]}},
                "required": ["score"], "additionalProperties": False}
JUDGE_PROMPT = """You rate a reply of a task-oriented assistant.

Conversation so far:
{history}

Ground-truth reply:
{gold}

Reply to rate:
{reply}

Rate the reply to rate: 0 = not relevant to the conversation, or it has major issues (wrong facts,
wrong items, nonsense); 1 = relevant but worse than the ground-truth reply; 2 = as good as the
ground-truth reply or better. Answer with JSON only: {{"score": 0}}, {{"score": 1}} or {{"score": 2}}."""


def reply_of(text: str) -> str:
    """The reply part of an assistant text: a leading JSON annotation line is dropped."""
    first, _, rest = (text or "").partition("\n")
    try:
        json.loads(first)
    except ValueError:
        return (text or "").strip()
    return rest.strip()


def history_of(example: dict, index: int) -> str:
    lines = [f"{m['role'].upper()}: {reply_of(m['content']) if m['role'] == 'assistant' else m['content']}"
             for m in (example.get("messages") or [])[:index] if m["role"] != "system"]
    return "\n".join(lines) or "(the conversation starts here)"


def judged_turns(examples: Sequence[dict], limit: int) -> list[dict]:
    """The first `limit` scored turns: {id, history, gold}."""
    turns = [{"id": turn_id(ex, t), "history": history_of(ex, t["index"]), "gold": reply_of(t["reply"])}
             for ex in examples for t in eval_turns(ex)]
    return turns[:limit]


def foreign_reply(turns: list[dict], i: int) -> str:
    """The gold reply of a turn of another dialogue: the first one from half the list away on."""
    dialogue = turns[i]["id"].rsplit(":", 1)[0]
    n = len(turns)
    for step in range(n):
        other = turns[(i + max(1, n // 2) + step) % n]
        if other["id"].rsplit(":", 1)[0] != dialogue:
            return other["gold"]
    return ""                   # one dialogue only: an empty reply is the foreign one


def judge_request(turn: dict, reply: str, request_cls, what: str):
    prompt = JUDGE_PROMPT.format(history=turn["history"], gold=turn["gold"], reply=reply or "(empty)")
    # 16 tokens: `{"score": 0}` is 5 tokens for SmolLM2's BPE but 9+ for the tiny model's small
    # vocabulary; constrained decoding stops at the closing brace, so the budget costs nothing
    return request_cls(messages=[{"role": "user", "content": prompt}], temperature=0.0, max_tokens=16,
                       schema=JUDGE_SCHEMA, meta={"turn": turn["id"], "what": what})


def offline_judge(request) -> str:
    """The template/dry-run stand-in: 2 for the gold reply itself, 1 otherwise (a plausible answer)."""
    return json.dumps({"score": 2 if request.meta["what"] == "gold" else 1})


def _score(response) -> int | None:
    data = response.data if response.ok else None
    value = data.get("score") if isinstance(data, dict) else None
    return value if value in (0, 1, 2) and not isinstance(value, bool) else None


def relevance(turns: list[dict], predictions: dict[str, dict[str, str]], teacher, request_cls,
              min_accuracy: float) -> dict:
    """{model: {relevance_mean, relevance_share_0/1/2, relevance_invalid, relevance_judged}} and
    {"judge": {pairwise accuracy, flagged, requests, ...}}."""
    if not turns:
        return {}
    requests = []
    for i, turn in enumerate(turns):
        requests.append(judge_request(turn, turn["gold"], request_cls, "gold"))
        requests.append(judge_request(turn, foreign_reply(turns, i), request_cls, "foreign"))
        for model, rows in predictions.items():
            requests.append(judge_request(turn, reply_of(rows.get(turn["id"], "")), request_cls, model))
    scores = [_score(r) for r in teacher.complete(requests, offline=offline_judge)]
    by: dict[str, list[int | None]] = {}
    for request, score in zip(requests, scores):
        by.setdefault(request.meta["what"], []).append(score)
    out = {}
    for model in predictions:
        got = by.get(model, [])
        valid = [s for s in got if s is not None]
        out[model] = {"relevance_judged": len(got), "relevance_invalid": len(got) - len(valid),
                      "relevance_mean": round(sum(valid) / len(valid), 4) if valid else None,
                      **{f"relevance_share_{k}": round(valid.count(k) / len(valid), 4) if valid else None
                         for k in (0, 1, 2)}}
    pairs = [(g, f) for g, f in zip(by["gold"], by["foreign"])]
    wins = sum(g is not None and f is not None and g > f for g, f in pairs)
    accuracy = round(wins / len(pairs), 4)
    out["judge"] = {"judge_pairwise_accuracy": accuracy, "judge_flagged": accuracy < min_accuracy,
                    "judge_gold_mean": _mean(by["gold"]), "judge_foreign_mean": _mean(by["foreign"]),
                    "judge_invalid": sum(s is None for s in scores), "judge_prompts": len(requests)}
    return out


def _mean(values: list[int | None]) -> float | None:
    valid = [v for v in values if v is not None]
    return round(sum(valid) / len(valid), 4) if valid else None
