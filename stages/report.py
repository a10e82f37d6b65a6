"""Stage `report`: one self-contained HTML page of the run, the page a person opens first.

Reads:  metrics/ (score, rag, judge, train, select, export, generate/<source>), plots/ (format/lengths.csv, score/confusion.csv and
        the stages' PNGs), dvclive/train (loss curves), data/formatted/test.jsonl and
        data/predictions/<report.model>.jsonl (best and worst turns), params [predict.max_dialogues, cards, report, sources]
Writes: reports/index.html (images inlined, no scripts: opens offline, anywhere)
Run:    python -m stages.report metrics plots dvclive/train data/formatted/test.jsonl data/predictions reports/index.html
"""
import logging

from synthtune.core.cli import run_stage, stage
from synthtune.core.errors import ParamsError
from synthtune.core.io import atomic_open, read_jsonl
from synthtune.evaluate.predict import eval_examples
from synthtune.handover.report import build_report
from synthtune.handover.run_files import RunMetrics

log = logging.getLogger("stages.report")


def main(argv: list[str] | None = None) -> None:
    args, params = stage(__doc__, argv, "run_metrics", "plots", "live", "test", "predictions", "out")
    predictions = args.predictions / f"{params.report.model}.jsonl"
    if not predictions.is_file():
        raise ParamsError(f"params.yaml: report.model {params.report.model!r}: no {predictions} "
                          f"(the models predict wrote: {sorted(p.stem for p in args.predictions.glob('*.jsonl'))})")
    test = eval_examples(read_jsonl(args.test, allow_empty=True), params.predict.max_dialogues)
    run = RunMetrics(args.run_metrics)
    page = build_report(args.plots, run, args.live, test, read_jsonl(predictions),
                        f"Run report: {params.cards.model_id}", params.report.examples, params.report.model,
                        generated=run.generate(params.sources),
                        min_grounding={name: source.min_grounding for name, source in params.sources.items()
                                       if getattr(source, "min_grounding", None) is not None})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(args.out) as out:
        out.write(page)
    log.info("wrote %s (%d KB)", args.out, len(page) // 1024)


if __name__ == "__main__":
    run_stage(main)
