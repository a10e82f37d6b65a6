"""Stage `generate@<source>`: produce one source's raw records.

Reads:  data/seeds (catalogs, state graphs), params [seed, sources.<name>]
Writes: data/raw/<name>.jsonl (canonical records), metrics/generate/<name>.json
Run:    python -m stages.generate recipe_tod data/seeds data/raw/recipe_tod.jsonl metrics/generate/recipe_tod.json
"""
import argparse
import logging
from pathlib import Path

from lib.cli import run_stage
from lib.config import load_params
from lib.sources import dialogue_metrics, generate_source
from lib.errors import ParamsError
from lib.io import write_json, write_jsonl

log = logging.getLogger("stages.generate")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source")
    parser.add_argument("seeds", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("metrics", type=Path)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)

    params = load_params(args.params)
    if args.source not in params.sources:
        raise ParamsError(f"{args.params}: sources.{args.source}: no such source")
    records = generate_source(args.source, params.sources[args.source], args.seeds, params.seed)
    count = write_jsonl(args.out, records)
    write_json(args.metrics, dialogue_metrics(records))
    log.info("wrote %d records to %s", count, args.out)


if __name__ == "__main__":
    run_stage(main)
