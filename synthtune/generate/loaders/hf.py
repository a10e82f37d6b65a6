"""Hugging Face datasets: a local json/parquet/csv/text file (`path` or option `data_files`) or a
hub id (`dataset`); rows are alpaca-style or chat (`messages`). A dataset row has no file line:
rejects and records carry `row` (1-based) with `line` null, and reasons say "row N".

options: `dataset` (required), `config`, `split`, `data_files`, `cache_dir`. `datasets` is imported
only when this loader runs (slow import).
"""
from __future__ import annotations

from pathlib import Path

from synthtune.core.errors import InputError
from synthtune.core.io import require_file
from synthtune.generate.loaders.alpaca import ALPACA_FIELDS, alpaca_messages
from synthtune.generate.loaders.base import RowBuilder, Where, add_converted, one_line, register_loader
from synthtune.generate.loaders.chat import chat_messages

LOCAL_HF_BUILDERS = ("json", "parquet", "csv", "text")


@register_loader("hf", mapping={**ALPACA_FIELDS, "messages": "messages", "group": None},
                 options={"dataset": None, "config": None, "split": "train", "data_files": None, "cache_dir": None},
                 needs_file=False)
def load_hf(path: Path | None, rows: RowBuilder, mapping: dict, options: dict, explicit: dict) -> None:
    dataset = options["dataset"]
    if not isinstance(dataset, str) or not dataset:
        raise InputError("loader 'hf': option 'dataset' is required (json, parquet, csv or a hub id)")
    data_files = options["data_files"]
    if dataset in LOCAL_HF_BUILDERS:
        key = "options.data_files" if data_files is not None else "path"
        data_files = data_files if data_files is not None else path
        if data_files is None:
            raise InputError(f"loader 'hf': dataset '{dataset}' needs a path or option data_files")
        rows.check_inside_repo(data_files, key)       # a hub dataset's data_files are hub paths: not checked
        data_files = str(require_file(data_files))
    rows.file = str(data_files) if data_files is not None else dataset
    import datasets  # slow import: only when this loader is used

    kwargs = {"split": options["split"]}
    if data_files is not None:
        kwargs["data_files"] = str(data_files)
    if options["cache_dir"] is not None:
        kwargs["cache_dir"] = str(options["cache_dir"])
    try:
        ds = datasets.load_dataset(dataset, options["config"], **kwargs)
    except Exception as exc:  # noqa: BLE001 - any load failure is the user's input problem
        raise InputError(f"{data_files or dataset}: cannot load dataset: {one_line(exc)}") from None
    chat = "messages" in explicit or ("messages" in ds.column_names and "instruction" not in explicit
                                      and mapping["instruction"] not in ds.column_names)
    convert = chat_messages if chat else alpaca_messages
    base_meta = {"dataset": dataset, "split": options["split"]}
    if options["config"] is not None:
        base_meta["config"] = options["config"]
    add_converted(rows, ((Where(None, row=index + 1), row) for index, row in enumerate(ds)), mapping, convert,
                  meta=base_meta)
