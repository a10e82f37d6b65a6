"""Stage `generate@<source>`: produce one source's raw records (simulate, or load the user's file).

Reads:  the source's input (`sources.<name>.path`: a catalog, or a data file), data/seeds/graphs,
        params [seed, sources.<name>]
Writes: data/raw/<name>.jsonl (canonical records), data/rejected/<name>.jsonl (bad rows with
        file, line, reason), metrics/generate/<name>.json
Run:    python -m stages.generate recipe_tod data/seeds/recipes.json data/raw/recipe_tod.jsonl \\
            data/rejected/recipe_tod.jsonl metrics/generate/recipe_tod.json
"""
import argparse
import logging
from pathlib import Path

from lib.cli import run_stage
from lib.config import load_params
from lib.errors import ParamsError
from lib.io import write_json, write_jsonl
from lib.sources import generate_source

log = logging.getLogger("stages.generate")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source")
    parser.add_argument("input", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("rejects", type=Path)
    parser.add_argument("metrics", type=Path)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)

    params = load_params(args.params)
    if args.source not in params.sources:
        raise ParamsError(f"{args.params}: sources.{args.source}: no such source")
    result = generate_source(args.source, params.sources[args.source], args.input, params.seed)
    write_jsonl(args.out, result.records)
    write_jsonl(args.rejects, result.rejects)
    write_json(args.metrics, result.metrics)
    log.info("wrote %d records to %s, %d rejects", len(result.records), args.out, len(result.rejects))


if __name__ == "__main__":
    run_stage(main)
