"""Stage `generate@<source>`: produce one source's raw records (simulate, or load the user's file).

Reads:  the source's input (`sources.<name>.path`: a catalog, or a data file), data/seeds/graphs,
        params [seed, sources.<name>, teacher, prepare (the ablation keeps held-out dialogues graph-made)]
Writes: data/raw/<name>.jsonl (canonical records), data/rejected/<name>.jsonl (bad rows with
        file, line, reason; written even when no row survives, which then fails in one line),
        metrics/generate/<name>.json, the teacher cache (persisted)
Run:    python -m stages.generate recipe_tod data/seeds/recipes.json data/raw/recipe_tod.jsonl \\
            data/rejected/recipe_tod.jsonl metrics/generate/recipe_tod.json
        --teacher-cache DIR: the LLM teacher's response cache (dvc.yaml: ${teacher.cache_dir}/<source>)
        --dry-run: print the teacher requests, their tokens and estimated cost; send and write nothing
"""
import logging
from pathlib import Path

from synthtune.core.cli import run_stage, stage
from synthtune.core.errors import ParamsError
from synthtune.core.io import write_json, write_jsonl
from synthtune.generate.sources import NoRecords, generate_source, require_records
from synthtune.llm.teacher import open_teacher

log = logging.getLogger("stages.generate")


def _options(parser) -> None:
    parser.add_argument("--teacher-cache", type=Path, default=None,
                        help="the source's teacher response cache folder (dvc.yaml: ${teacher.cache_dir}/<source>)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the teacher requests, their tokens and estimated cost; send and write nothing")


def main(argv: list[str] | None = None) -> None:
    args, params = stage(__doc__, argv, ("source", str), "input", "out", "rejects", "metrics", options=_options)
    if args.source not in params.sources:
        raise ParamsError(f"{args.params}: sources.{args.source}: no such source")
    source = params.sources[args.source]
    if args.teacher_cache is not None and not args.dry_run:
        args.teacher_cache.mkdir(parents=True, exist_ok=True)     # a DVC output even when unused
    try:
        with open_teacher(params.teacher, backend=source.teacher, cache_dir=args.teacher_cache,
                          dry_run=args.dry_run) as teacher:
            result = generate_source(args.source, source, args.input, params.seed, teacher=teacher,
                                     prepare=params.prepare)
    except NoRecords as exc:                  # the rejects say why: written before the error
        if not args.dry_run:
            write_jsonl(args.rejects, exc.rejects)
        raise
    if args.dry_run:
        print(teacher.dry_run_report())
        return
    if teacher.backend != "template":
        result.metrics.update(teacher.stats.metrics())
    write_jsonl(args.rejects, result.rejects)
    require_records(args.source, source, args.input, result, args.rejects)   # no records: one line, here
    write_jsonl(args.out, result.records)
    write_json(args.metrics, result.metrics)
    log.info("wrote %d records to %s, %d rejects", len(result.records), args.out, len(result.rejects))


if __name__ == "__main__":
    run_stage(main)
