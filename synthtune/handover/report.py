"""The run report: one self-contained HTML page (reports/index.html) a person opens first.

Everything on it is drawn from the run's files: the scorecard (metrics/score.json, rag.json), the
loss curves (dvclive), the intent confusion (plots/score/confusion.csv), the token-length histogram
(plots/format/lengths.csv), the PNGs the stages already draw (selection map, reply and RAG cosine),
and the best and worst predicted turns. Images are inlined as data: URIs and there is no script, so
the file opens anywhere, offline, and can be mailed or attached to a pull request. `dvc plots diff`
stays the tool to compare runs; this page describes one.
"""
from __future__ import annotations

import base64
import csv
import html
import io
from collections import Counter
from pathlib import Path

from synthtune.handover.run_files import RunMetrics, fmt, read_tsv, score_rows

MODEL_COLOURS = {"base": "#9aa5b1", "tuned": "#2f6fb0", "majority": "#d9a441"}
STAGE_PNGS = [("select/map.png", "Selection pool, 2-D map by cluster and source (select)"),
              ("score/cosine.png", "Reply cosine to the gold reply, per model (score)"),
              ("rag/cosine.png", "RAG answer cosine to the reference, per model (rag)"),
              ("rag/chunk_lengths.png", "RAG chunk lengths (rag)")]


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def png_uri(fig) -> str:
    plt = _figure()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, metadata={"Software": None})
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def file_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def score_bars(score: dict) -> str:
    """One small bar chart per headline metric: base vs tuned (vs majority where it has the metric)."""
    plt = _figure()
    rows = [r for r in score_rows(score) if r[0] != "perplexity"]
    cols = 4
    fig, axes = plt.subplots((len(rows) + cols - 1) // cols, cols, figsize=(12, 2.4 * ((len(rows) + cols - 1) // cols)),
                             squeeze=False)
    for ax, (_, label, values) in zip(axes.flat, rows):
        names = [m for m in values if values[m] is not None]
        ax.bar(names, [values[m] for m in names], color=[MODEL_COLOURS.get(m, "#777") for m in names])
        for i, m in enumerate(names):
            ax.text(i, values[m], fmt(values[m], 3), ha="center", va="bottom", fontsize=8)
        ax.set_title(label, fontsize=9)
        ax.tick_params(labelsize=8)
    for ax in list(axes.flat)[len(rows):]:
        ax.axis("off")
    fig.tight_layout()
    return png_uri(fig)


def loss_curves(live_dir: Path) -> str | None:
    plt = _figure()
    train = read_tsv(live_dir / "plots/metrics/train/loss.tsv")
    val = read_tsv(live_dir / "plots/metrics/eval/loss.tsv")
    if not train and not val:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for rows, name in ((train, "train"), (val, "val")):
        if rows:
            ax.plot([r["step"] for r in rows], [r["loss"] for r in rows], marker="o" if len(rows) < 20 else None,
                    label=f"{name} loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend()
    fig.tight_layout()
    return png_uri(fig)


def csv_rows(path: Path) -> list[dict]:
    """A plots/ CSV as rows; an absent file (a stage that drew nothing) is no rows."""
    if not path.is_file():
        return []
    with path.open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def confusion_matrix(path: Path) -> str | None:
    rows = csv_rows(path)
    if not rows:
        return None
    plt = _figure()
    counts = Counter((r["actual"], r["predicted"]) for r in rows)
    actual = sorted({a for a, _ in counts})
    predicted = actual + sorted({p for _, p in counts} - set(actual))
    grid = [[counts.get((a, p), 0) for p in predicted] for a in actual]
    fig, ax = plt.subplots(figsize=(1.5 + 0.42 * len(predicted), 1.2 + 0.38 * len(actual)))
    ax.imshow(grid, cmap="Blues")
    ax.set_xticks(range(len(predicted)), predicted, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(actual)), actual, fontsize=8)
    for i, line in enumerate(grid):
        for j, value in enumerate(line):
            if value:
                ax.text(j, i, str(value), ha="center", va="center", fontsize=7,
                        color="white" if value > max(map(max, grid)) / 2 else "black")
    ax.set_xlabel("predicted intent")
    ax.set_ylabel("gold intent")
    fig.tight_layout()
    return png_uri(fig)


def length_histogram(path: Path) -> str | None:
    rows = csv_rows(path)
    if not rows:
        return None
    plt = _figure()
    splits = [k for k in rows[0] if k != "tokens"]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    width = 0.8 / len(splits)
    for i, split in enumerate(splits):
        ax.bar([j + i * width for j in range(len(rows))], [int(r[split]) for r in rows], width, label=split)
    ax.set_xticks(range(len(rows)), [r["tokens"] for r in rows], rotation=60, fontsize=7)
    ax.set_xlabel("tokens per row (bin upper edge)")
    ax.set_ylabel("rows")
    ax.legend()
    fig.tight_layout()
    return png_uri(fig)


def grounding_histogram(name: str, made: dict, threshold: float | None) -> str | None:
    """Document QA: the MiniLM cosine of each generated answer to its chunk (generate metrics), in
    tenths; the bins below `min_grounding` were quarantined as ungrounded."""
    bins = made.get("grounding_histogram")
    if not bins:
        return None
    plt = _figure()
    edges = [int(k.split("_")[1]) / 100 for k in bins]       # cos_30_40 -> 0.3
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.bar([e + 0.05 for e in edges], list(bins.values()), width=0.09,
           color=["#c55" if threshold is not None and e + 0.1 <= threshold else "#47a" for e in edges])
    if threshold is not None:
        ax.axvline(threshold, color="#c55", linestyle="--", label=f"min_grounding {threshold}")
        ax.legend()
    ax.set_xlim(0, 1)
    ax.set_xlabel(f"answer-to-chunk cosine (MiniLM), {name}")
    ax.set_ylabel("answers")
    fig.tight_layout()
    return png_uri(fig)


def ranked_turns(test: list[dict], predictions: list[dict], n: int) -> tuple[list[dict], list[dict]]:
    """The `n` best and `n` worst predicted turns: right intent first, then the reply's chrF to the gold."""
    from sacrebleu.metrics import CHRF

    from synthtune.evaluate.scorecard import references
    from synthtune.model.formats import parse_annotation

    chrf = CHRF()
    refs = references(test)
    by_id = {ex["id"]: ex for ex in test}
    turns = []
    for pred in sorted(predictions, key=lambda p: p["id"]):
        ref = refs.get(pred["id"])
        if ref is None:
            continue
        intent, slots, reply = parse_annotation(pred["output"])
        right = ref.get("intent") is None or intent == ref.get("intent")
        messages = by_id[ref["dialogue"]].get("messages") or []
        user = next((m["content"] for m in reversed(messages[:ref["index"]]) if m["role"] == "user"), "")
        turns.append({"id": pred["id"], "source": ref["source"], "user": user, "gold": ref, "output": pred["output"],
                      "intent_ok": right, "chrf": chrf.sentence_score(reply, [ref["reply"] or ""]).score})
    turns.sort(key=lambda t: (t["intent_ok"], t["chrf"], t["id"]))
    worst = turns[:n]
    best = [t for t in reversed(turns[-n:]) if t not in worst] if n else []
    return best, worst


def _table(score: dict) -> str:
    models = list(score)
    head = "".join(f"<th>{html.escape(m)}</th>" for m in models)
    body = []
    for key, label, values in score_rows(score):
        cells = []
        for m in models:
            text = fmt(values.get(m))
            low, high = score[m].get(f"{key}_ci_low"), score[m].get(f"{key}_ci_high")
            if low is not None:
                text += f" <small>[{fmt(low)}, {fmt(high)}]</small>"
            cells.append(f"<td>{text}</td>")
        body.append(f"<tr><th scope=row>{html.escape(label)}</th>{''.join(cells)}</tr>")
    return f"<table><tr><th>metric</th>{head}</tr>{''.join(body)}</table>"


def _rag_table(rag: dict) -> str:
    if not rag:
        return ""
    models = list(rag)
    retrievers = sorted(k.removeprefix("hit_at_k_") for k in rag[models[0]] if k.startswith("hit_at_k_"))
    head = "".join(f"<th>{m} hit@k</th><th>{m} answer cosine</th>" for m in models)
    rows = "".join("<tr><th scope=row>" + r + "</th>" + "".join(
        f"<td>{fmt(rag[m].get('hit_at_k_' + r))}</td><td>{fmt(rag[m].get('cosine_' + r))}</td>" for m in models)
        + "</tr>" for r in retrievers)
    return f"<h2>Retrieval-augmented answers</h2><table><tr><th>retriever</th>{head}</tr>{rows}</table>"


def _judge_table(judge: dict) -> str:
    """SynTOD relevance per model, and whether the judge itself passed its gold-vs-foreign check."""
    if not judge:
        return ""
    check = judge.get("judge", {})
    models = [m for m in judge if m != "judge"]
    rows = "".join(f"<tr><th scope=row>{html.escape(m)}</th>" + "".join(
        f"<td>{fmt(judge[m].get(k))}</td>" for k in ("relevance_mean", "relevance_share_0", "relevance_share_1",
                                                     "relevance_share_2", "relevance_judged")) + "</tr>" for m in models)
    verdict = ("<p><b>Flagged:</b> the judge did not rate the gold reply above another dialogue's reply often "
               "enough; its relevance figures say little.</p>" if check.get("judge_flagged") else "")
    return (f"<h2>Relevance (LLM judge, SynTOD 0/1/2)</h2><table><tr><th>model</th><th>mean</th><th>share 0</th>"
            f"<th>share 1</th><th>share 2</th><th>judged</th></tr>{rows}</table>"
            f"<p><small>judge: {html.escape(str(check.get('judge_model')))}; gold-vs-foreign pairwise accuracy "
            f"{fmt(check.get('judge_pairwise_accuracy'))}</small></p>{verdict}")


def _examples(title: str, turns: list[dict]) -> str:
    if not turns:
        return ""
    items = []
    for t in turns:
        gold = t["gold"]
        state = "" if gold.get("intent") is None else f"intent {html.escape(str(gold['intent']))}, slots {html.escape(str(gold.get('slots')))}<br>"
        items.append(
            f"<div class=turn><div class=meta>{html.escape(t['id'])} · {html.escape(t['source'])} · "
            f"{'right intent' if t['intent_ok'] else 'wrong intent'} · reply chrF {t['chrf']:.1f}</div>"
            f"<div><b>user</b> {html.escape(t['user'])}</div>"
            f"<div><b>gold</b> {state}{html.escape(gold.get('reply') or '')}</div>"
            f"<div><b>model</b> <code>{html.escape(t['output'])}</code></div></div>")
    return f"<h3>{html.escape(title)}</h3>{''.join(items)}"


CSS = """body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#1d2430;padding:0 1em}
table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #d5dae1;padding:.25em .6em;text-align:right}
th[scope=row],tr:first-child th{text-align:left;background:#f3f5f8}img{max-width:100%;border:1px solid #e3e7ec}
figure{margin:1em 0}figure.wide{grid-column:1/-1}figcaption{color:#566;font-size:12px}.grid{display:grid;grid-template-columns:1fr 1fr;gap:1em}
.turn{border-left:3px solid #2f6fb0;padding:.3em .8em;margin:.6em 0;background:#f8f9fb}.meta{color:#667;font-size:12px}
code{white-space:pre-wrap;font-size:12px}.facts td,.facts th{text-align:left}"""


def build_report(plots: Path, run: RunMetrics, live_dir: Path, test: list[dict], predictions: list[dict],
                 title: str, examples: int, model: str, generated: dict[str, dict] | None = None,
                 min_grounding: dict[str, float] | None = None) -> str:
    """The report's HTML from the run's metrics, its plots/ folder and dvclive folder, test examples,
    predictions, and `generated` ({source: its generate metrics}; `min_grounding` by document-QA source)."""
    score, rag, train = run.stage("score"), run.optional("rag"), run.stage("train")
    select, export, judge = run.stage("select"), run.optional("export"), run.optional("judge")
    figures = [("Base vs tuned (vs majority), per metric", score_bars(score))]
    for uri, caption in ((loss_curves(live_dir), "Training and validation loss per step (dvclive)"),
                         (confusion_matrix(plots / "score/confusion.csv"), "Intent confusion (score.confusion_model)"),
                         (length_histogram(plots / "format/lengths.csv"), "Row length histogram per split (format)")):
        if uri:
            figures.append((caption, uri))
    figures += [(caption, file_uri(plots / path)) for path, caption in STAGE_PNGS if (plots / path).is_file()]
    for name, made in (generated or {}).items():
        uri = grounding_histogram(name, made, (min_grounding or {}).get(name))
        if uri:
            figures.append((f"Document-QA answers grounded in their chunk (generate@{name}); "
                            "below the line: quarantined as ungrounded", uri))
    best, worst = ranked_turns(test, predictions, examples)
    facts = [("method", f"{train['method']} · {train['dtype']} · {fmt(train['trainable_params'])} trainable"),
             ("training", f"{fmt(train['steps'])} steps in {fmt(train['train_seconds'])} s on "
                          f"{train.get('device', 'an unrecorded device')}, {fmt(train.get('real_tokens_per_second'))} tokens/s"),
             ("data", f"{fmt(select['selected_records'])} selected of {fmt(select['pool_records'])} "
                      f"({select['strategy']})"),
             ("losses", f"train {fmt(train['train_loss'])}, val {fmt(train.get('eval_loss'))}")]
    if export:
        facts.append(("export", f"{export['method']}, {export['dtype']}, merge check max |Δlogit| "
                                f"{fmt(export['max_abs_logit_diff'])}"))
    fact_rows = "".join(f"<tr><th scope=row>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in facts)
    figure_html = "".join(f"<figure{' class=wide' if i == 0 else ''}><img src=\"{uri}\" alt=\"{html.escape(caption)}\"><figcaption>"
                          f"{html.escape(caption)}</figcaption></figure>" for i, (caption, uri) in enumerate(figures))
    return f"""<!doctype html>
<html lang=en><head><meta charset=utf-8><title>{html.escape(title)}</title><style>{CSS}</style></head>
<body><h1>{html.escape(title)}</h1>
<p>Written by the <code>report</code> stage from this run's metrics/, plots/ and dvclive/ files. Model card:
<code>models/merged/README.md</code>; dataset card: <code>data/dataset/README.md</code>.</p>
<table class=facts>{fact_rows}</table>
<h2>Scorecard</h2>{_table(score)}<p><small>[low, high]: bootstrap 95% interval over test dialogues.</small></p>
{_rag_table(rag)}
{_judge_table(judge)}
<h2>Charts</h2><div class=grid>{figure_html}</div>
<h2>Example turns ({html.escape(model)})</h2>
{_examples("Best", best)}{_examples("Worst", worst)}
</body></html>
"""
