"""Is a generated answer grounded in its chunk? Embedding cosine plus a check of numbers and names.

David & Goliath keeps a generated training pair only when the answer is close to its context
(cosine of sentence embeddings). A cosine alone misses the failure that matters most in manuals:
an answer that talks about the right thing with the wrong figure ("200 lumens" where the chunk
says 900) is close in embedding space. So an answer must also only use numbers, and names
(capitalised or mixed-case words that are not sentence-initial, product codes), that occur in the
chunk. An answer failing either check is quarantined with code `ungrounded` and the reason.

`grounding(answers, contexts, embedder, min_cosine)` -> per answer {cosine, unsupported, ok, reason};
`grounding_metrics(scores)` -> the distribution (mean, quantiles, a 10-bin histogram) for metrics.
"""
from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

NUMBER = re.compile(r"(?<![\w.])\d+(?:[.,]\d+)?(?![\w])")
NAME = re.compile(r"\b(?:[A-Z][a-z]*[A-Z0-9][\w-]*|[A-Z]{2,}[\w-]*|[A-Z][a-z]+)\b")
SENTENCE_START = re.compile(r"(?:^|[.!?:]\s+|\n)\s*[\"'(]*$")
COMMON = frozenset("""I The A An If When Yes No It This That These Those You Your To For In On At By With
Use Do Does Not Please Press Hold Make Keep Check Note Also Then Each Every Its Our We They There""".split())


def _norm_number(token: str) -> str:
    return token.replace(",", ".").rstrip("0").rstrip(".") if "." in token or "," in token else token


def unsupported_terms(answer: str, context: str) -> list[str]:
    """Numbers and names of `answer` that `context` never mentions (case-insensitive for names)."""
    numbers = {_norm_number(n) for n in NUMBER.findall(context)}
    lowered = context.lower()
    missing = []
    for token in NUMBER.findall(answer):
        if _norm_number(token) not in numbers:
            missing.append(token)
    for match in NAME.finditer(answer):
        word = match.group(0)
        if word in COMMON or SENTENCE_START.search(answer[:match.start()]):
            continue            # a capital at the start of a sentence says nothing about a name
        if word.lower() not in lowered:
            missing.append(word)
    return list(dict.fromkeys(missing))


def grounding(answers: Sequence[str], contexts: Sequence[str], embedder: str, min_cosine: float,
              seed: int = 0, key: str = "grounding_embedder") -> list[dict]:
    """One verdict per (answer, context) pair; embeddings through synthtune.text.embeddings (cached).
    `key`: the params key of `embedder`, named by its errors."""
    from synthtune.text.embeddings import embed_texts

    if not answers:
        return []
    vectors, _ = embed_texts(list(answers) + list(contexts), embedder, dims=256, seed=seed, key=key)
    a, c = vectors[:len(answers)], vectors[len(answers):]
    cosines = np.einsum("ij,ij->i", a, c)
    out = []
    for answer, context, cosine in zip(answers, contexts, cosines):
        cosine = round(float(cosine), 4)
        missing = unsupported_terms(answer, context)
        reason = None
        if cosine < min_cosine:
            reason = f"answer-chunk cosine {cosine:.3f} < min_grounding {min_cosine:g}"
        elif missing:
            reason = f"answer states {', '.join(missing[:5])} not found in its chunk"
        out.append({"cosine": cosine, "unsupported": missing, "ok": reason is None, "reason": reason})
    return out


def grounding_metrics(scores: Sequence[dict]) -> dict:
    """The cosine distribution of all scored answers and how many failed each check."""
    if not scores:
        return {}
    cos = np.array([s["cosine"] for s in scores])
    counts, _ = np.histogram(np.clip(cos, 0, 1), bins=10, range=(0, 1))
    return {"grounding_scored": len(scores), "grounding_mean_cosine": round(float(cos.mean()), 4),
            "grounding_p10_cosine": round(float(np.quantile(cos, 0.1)), 4),
            "grounding_median_cosine": round(float(np.median(cos)), 4),
            "ungrounded_low_cosine": sum((s["reason"] or "").startswith("answer-chunk") for s in scores),
            "ungrounded_unsupported_terms": sum((s["reason"] or "").startswith("answer states") for s in scores),
            "grounding_histogram": {f"cos_{i * 10:02d}_{(i + 1) * 10:02d}": int(n) for i, n in enumerate(counts)}}
