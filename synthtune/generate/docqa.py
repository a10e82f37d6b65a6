"""Document-grounded QA generation (the David & Goliath method): documents → chunks → Q&A records.

1. Documents: `.md`, `.txt` and `.pdf` (pypdf) files of a folder; a file that cannot be read is a
   reject, not a failure (synthtune.text.documents).
2. Sections (markdown `#` headings; short title lines in text and PDF) → sentences, packed into
   chunks of at most `chunk_tokens` teacher tokens; consecutive chunks of a section share about
   `chunk_overlap` tokens of whole sentences. Chunks never cross sections
   (synthtune.text.chunking.sentence_chunks).
3. Chunks shorter than the `min_length_percentile` (25th by default) of all chunk lengths are
   dropped: headings-only scraps and tails make poor questions.
4. The teacher writes one question from each chunk (JSON `{"question": …}`), then answers it
   from the chunk. The offline `template` teacher makes the question by rules from one of the
   chunk's sentences (If/When clauses, "… to <goal>." instructions, "X is/are …" definitions)
   and answers with the chunk's sentence that best matches the question.
5. Every answer is checked against its chunk (synthtune.generate.grounding): embedding cosine at
   least `min_grounding`, and no number or name the chunk does not mention; an answer failing
   either is quarantined (`ungrounded`, with the reason) and the distribution goes to metrics.
6. Records are chat records (user: question, assistant: answer) that keep the chunk:
   `meta.context` (the chunk text), `meta.reference` (the answer), `meta.doc`, `meta.section`,
   `meta.chunk`, `meta.chunk_tokens`; `group` is `<doc>#<section>` so overlapping chunks never
   straddle splits. The Alpaca-style "Use the following pieces of context…" rendering reads
   `meta.context` (synthtune.model.formats).
"""
from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

from synthtune.core.config import SourceParams
from synthtune.core.errors import InputError
from synthtune.core.records import content_hash, record_id
from synthtune.generate.grounding import grounding, grounding_metrics
from synthtune.llm.teacher import ChatRequest, Teacher
from synthtune.text.chunking import Chunk, drop_short, sentence_chunks
from synthtune.text.documents import load_documents, split_sentences

QUESTION_SYSTEM = ("You write one exam question about a passage from a technical document. The question "
                   "must be answerable from the passage alone, specific (name the thing it asks about), "
                   "and useful to a reader of the document. Reply with JSON only: {\"question\": \"...\"}")
QUESTION_USER = "Document: {doc}\nSection: {section}\n\nPassage:\n{context}"
ANSWER_SYSTEM = ("Answer the question using only the context. Be concise and factual. If the context does "
                 "not contain the answer, say that it does not.")
ANSWER_USER = "Context:\n{context}\n\nQuestion: {question}"
STOPWORDS = frozenset("""a an the and or of to in on for with by at from as is are was were be been it its this
that these those you your what which who how when why does do did can should must will if then than into
about there their they them not no yes so such per each""".split())


@dataclass
class DocQAOutput:
    records: list[dict]
    rejects: list[dict] = field(default_factory=list)
    metrics: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------- template teacher


def _words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in STOPWORDS and len(w) > 1}


def _lower_det(phrase: str) -> str:
    first, _, rest = phrase.partition(" ")
    if first in ("The", "A", "An", "Each", "Every", "This", "Your", "Its", "Their", "Our"):
        return first.lower() + (" " + rest if rest else "")
    return phrase


_RULES = [
    # "If the tank runs dry, the pump stops." -> "What happens if the tank runs dry?"
    (re.compile(r"^(If|When|Whenever|After|Before) ([^,]{8,90}), (.{8,})\.$"),
     lambda m: f"What happens {m.group(1).lower()} {m.group(2)}?"),
    # "Hold the button for five seconds to reset the unit." -> "How do you reset the unit?"
    (re.compile(r"^([A-Z][a-z]+ .{4,80}?) to (?!(?:the|a|an|its|your|their|this|each|every|about|be)\b)"
                r"([a-z][^,;]{6,80})\.$"),
     lambda m: f"How do you {m.group(2)}?"),
    # "To reset the unit, hold the button." -> "How do you reset the unit?"
    (re.compile(r"^To ([a-z][^,]{6,80}), (.{8,})\.$"), lambda m: f"How do you {m.group(1)}?"),
    # "A grinder is a mill for beans." -> "What is a grinder?"; else "What can you say about …?"
    (re.compile(r"^((?:The |A |An |Each |Every |Your )?[A-Za-z0-9][\w\-' ]{1,50}?) (is|are) (.{6,})\.$"),
     lambda m: (f"What {m.group(2)} {_lower_det(m.group(1))}?" if re.match(r"(a|an|the|one) ", m.group(3))
                else f"What can you say about {_lower_det(m.group(1))}?")),
    # "The cache stores every answer." -> "What does the cache store?"
    (re.compile(r"^((?:The |A |An |Each |Every |Your )?[A-Za-z0-9][\w\-' ]{1,40}?) "
                r"(stores|keeps|uses|runs|needs|requires|writes|reads|holds|sends|shows|lasts|takes|"
                r"supports|accepts|drops|turns|starts|stops) (.{6,})\.$"),
     lambda m: f"What does {_lower_det(m.group(1))} {_base(m.group(2))}?"),
]


def _base(verb: str) -> str:
    return {"does": "do", "has": "have"}.get(verb, verb[:-1] if verb.endswith("s") else verb)


def rule_question(context: str, section: str, key: str) -> str:
    """A question one of the chunk's sentences answers, chosen deterministically by `key`."""
    sentences = [s for p in context.split("\n\n") for s in split_sentences(p)]
    candidates = []
    for sentence in sentences:
        if not 6 <= len(sentence.split()) <= 45 or not sentence.endswith("."):
            continue
        if re.match(r"^(It|This|That|These|Those|They|He|She|We|There|Here|Such|Also|But|And|Or|So)\b", sentence):
            continue
        for rank, (pattern, make) in enumerate(_RULES):
            match = pattern.match(sentence)
            if match:
                candidates.append((rank, make(match)))
                break
    if candidates:
        best = min(rank for rank, _ in candidates)
        options = sorted({q for rank, q in candidates if rank <= best + 1})
        return random.Random(key).choice(options)
    topic = section or (" ".join(sentences[0].split()[:6]).rstrip(".,;:") if sentences else "this passage")
    if re.match(r"^[A-Z][a-z]+\b", topic):        # "Cleaning" -> "cleaning"; "NASA", "K2" stay
        topic = topic[0].lower() + topic[1:]
    return f"What does the document say about {topic}?"


def rule_answer(context: str, question: str) -> str:
    """The chunk's sentence sharing the most content words with the question (ties: the first)."""
    sentences = [s for p in context.split("\n\n") for s in split_sentences(p)]
    wanted = _words(question)
    best = max(range(len(sentences)), key=lambda i: (len(wanted & _words(sentences[i])), -i))
    answer = sentences[best]
    if len(answer.split()) < 12 and best + 1 < len(sentences):
        answer += " " + sentences[best + 1]
    return answer


def template_question(request: ChatRequest) -> str:
    meta = request.meta
    return json.dumps({"question": rule_question(meta["context"], meta["section"], meta["key"])})


def template_answer(request: ChatRequest) -> str:
    return rule_answer(request.meta["context"], request.meta["question"])


# ------------------------------------------------------------------------------------ generator


QUESTION_SCHEMA = {"type": "object", "properties": {"question": {"type": "string", "minLength": 8, "maxLength": 300}},
                   "required": ["question"], "additionalProperties": False}


def question_request(chunk: Chunk, seed: int) -> ChatRequest:
    return ChatRequest(
        messages=[{"role": "system", "content": QUESTION_SYSTEM},
                  {"role": "user", "content": QUESTION_USER.format(doc=chunk.doc, section=chunk.section or "-",
                                                                   context=chunk.text)}],
        json=True, schema=QUESTION_SCHEMA, seed=seed, max_tokens=128,
        meta={"context": chunk.text, "section": chunk.section, "key": f"{seed}:{content_hash(chunk.text)}"})


def answer_request(chunk: Chunk, question: str, seed: int) -> ChatRequest:
    return ChatRequest(
        messages=[{"role": "system", "content": ANSWER_SYSTEM},
                  {"role": "user", "content": ANSWER_USER.format(context=chunk.text, question=question)}],
        temperature=0.0, seed=seed, meta={"context": chunk.text, "question": question})


def generate_docqa(name: str, source: SourceParams, input_path: Path, teacher: Teacher, seed: int) -> DocQAOutput:
    """One question per kept chunk, answered from the chunk; rejects for unreadable files and
    quarantined teacher answers."""
    docs, rejects = load_documents(input_path)
    chunks = [c for path, text in docs.items()
              for c in sentence_chunks(path.name, str(path), text, teacher.count_tokens,
                                       source.chunk_tokens, source.chunk_overlap)]
    kept, threshold = drop_short(chunks, source.min_length_percentile)
    questions = teacher.complete([question_request(c, seed) for c in kept], offline=template_question)
    asked: list[tuple[Chunk, str]] = []
    for chunk, response in zip(kept, questions):
        question = (response.data or {}).get("question") if response.ok else None
        if not isinstance(question, str) or not question.strip():
            reason = response.error or "answer JSON has no 'question' string"
            # a chunk has no file line: `chunk` (as in records' meta.chunk) says which one, `line` is null
            rejects.append({"file": chunk.path, "line": None, "chunk": chunk.index,
                            "code": "teacher_error" if not response.ok else "teacher_unusable",
                            "reason": f"teacher: question: {reason}"})
            continue
        asked.append((chunk, " ".join(question.split())))
    answers = teacher.complete([answer_request(c, q, seed) for c, q in asked], offline=template_answer)
    answered = [(c, q, r.text.strip()) for (c, q), r in zip(asked, answers) if r.ok]
    rejects += [{"file": c.path, "line": None, "chunk": c.index, "code": "teacher_error",
                 "reason": f"teacher: answer: {r.error}"} for (c, _), r in zip(asked, answers) if not r.ok]
    scores = grounding([a for _, _, a in answered], [c.text for c, _, _ in answered], source.grounding_embedder,
                       source.min_grounding, seed, key=f"sources.{name}.grounding_embedder")
    records = []
    for (chunk, question, answer), score in zip(answered, scores):
        if not score["ok"]:
            rejects.append({"file": chunk.path, "line": None, "chunk": chunk.index, "code": "ungrounded",
                            "reason": f"answer not grounded in its chunk: {score['reason']}"})
            continue
        record = {"source": name, "domain": source.domain, "group": f"{chunk.doc}#{chunk.section}",
                  "messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}],
                  "meta": {"context": chunk.text, "reference": answer, "doc": chunk.doc, "section": chunk.section,
                           "chunk": chunk.index, "chunk_tokens": chunk.tokens}}
        record["id"] = record_id(record)
        records.append(record)
    if not records and not rejects:
        raise InputError(f"{input_path}: sources.{name}: the documents gave no chunks")
    metrics = {"documents": len(docs), "chunks": len(chunks), "chunks_kept": len(kept),
               "chunk_min_tokens": round(threshold, 1), "records": len(records), "rejected": len(rejects),
               "mean_context_tokens": round(sum(c.tokens for c, _ in asked) / max(1, len(asked)), 1),
               **grounding_metrics(scores)}
    return DocQAOutput(records, rejects, metrics)
