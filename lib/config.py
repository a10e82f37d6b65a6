"""Typed params: params.yaml is parsed into frozen pydantic models.

Unknown keys and wrong types are errors that name the key and its line in params.yaml:
    error: params.yaml:57: train.lr: Input should be a valid number (got '2e-4')
Strict mode means YAML must write numbers as numbers (`2.0e-4`, not `2e-4`, which YAML reads
as a string) and booleans as booleans.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lib.errors import ParamsError


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class TinyModelParams(Section):
    vocab_size: int = Field(2048, ge=300)
    hidden_size: int = Field(192, ge=16)
    num_layers: int = Field(4, ge=1)
    num_heads: int = Field(4, ge=1)
    intermediate_size: int = Field(512, ge=16)
    max_position_embeddings: int = Field(1024, ge=64)
    pretrain_steps: int = Field(300, ge=0)
    pretrain_batch_size: int = Field(16, ge=1)
    pretrain_seq_len: int = Field(256, ge=16)
    pretrain_lr: float = Field(3.0e-3, gt=0)


class ModelParams(Section):
    name: str = "tiny"                      # "tiny" (built offline) or a Hugging Face model id
    revision: str = "main"                  # hub revision; resolved to a commit hash when loaded
    trust_remote_code: bool = False
    tiny: TinyModelParams = TinyModelParams()


class SourceParams(Section):
    """One entry of `sources`: a generator (`dialogues`) or a loader of the user's own data.

    `path` is the stage's input, interpolated into its cmd and deps by dvc.yaml: the catalog for
    dialogues (the state graph is data/seeds/graphs/<domain>.json), the data file for loaders.
    """
    kind: Literal["dialogues", "alpaca", "qa_json", "chat", "text", "oasst", "csv", "hf"]
    path: str
    domain: str = "general"
    # dialogues only
    teacher: Literal["template"] = "template"
    n_dialogues: int = Field(400, ge=1)
    max_turns: int = Field(12, ge=3)
    use_graph: bool = True
    # loaders only: field renames (e.g. {instruction: prompt}) and format options (e.g. {lang: en})
    mapping: dict[str, str] = Field(default_factory=dict)
    options: dict[str, str | int | float | bool | None] = Field(default_factory=dict)


class PrepareParams(Section):
    val_fraction: float = Field(0.1, ge=0, lt=1)
    test_fraction: float = Field(0.1, ge=0, lt=1)


class SelectParams(Section):
    near_dup: bool = True
    near_dup_threshold: float = Field(0.9, gt=0, le=1)      # MinHash LSH Jaccard on word 3-gram shingles
    decontam_ngram: int = Field(13, ge=0)                    # 0: no decontamination
    decontam_scope: Literal["prompts", "all"] = "prompts"    # prompts: user turns (or raw text)
    strategy: Literal["all", "cluster_quota"] = "cluster_quota"
    quota: Literal["proportional", "uniform"] = "proportional"
    n_samples: int = Field(300, ge=1)
    n_clusters: int = Field(8, ge=1)
    svd_dims: int = Field(64, ge=2)


class FormatParams(Section):
    template: Literal["chat"] = "chat"
    max_length: int = Field(768, ge=16)
    overflow: Literal["drop", "truncate_turns"] = "truncate_turns"


class LoraParams(Section):
    r: int = Field(16, ge=1)
    alpha: int = Field(32, ge=1)
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: str | list[str] = "all-linear"


class TrainParams(Section):
    method: Literal["lora", "full"] = "lora"
    lr: float = Field(2.0e-3, gt=0)
    epochs: float = Field(3.0, gt=0)
    max_steps: int = -1
    batch_size: int = Field(8, ge=1)
    grad_accum: int = Field(1, ge=1)
    warmup_ratio: float = Field(0.03, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float = Field(1.0, gt=0)
    lr_scheduler: str = "cosine"
    eval_steps: int = Field(50, ge=1)
    logging_steps: int = Field(10, ge=1)
    group_by_length: bool = True
    lora: LoraParams = LoraParams()


class PredictParams(Section):
    batch_size: int = Field(32, ge=1)
    max_new_tokens: int = Field(64, ge=1)
    max_dialogues: int = Field(0, ge=0)     # 0: every test dialogue


class RagParams(Section):
    chunk_tokens: int = Field(96, ge=8)
    chunk_overlap: int = Field(24, ge=0)
    top_k: int = Field(3, ge=1)
    max_new_tokens: int = Field(48, ge=1)
    batch_size: int = Field(16, ge=1)


class Params(Section):
    seed: int = 42
    model: ModelParams = ModelParams()
    sources: dict[str, SourceParams]
    prepare: PrepareParams = PrepareParams()
    select: SelectParams = SelectParams()
    format: FormatParams = FormatParams()
    train: TrainParams = TrainParams()
    predict: PredictParams = PredictParams()
    rag: RagParams = RagParams()


def _key_lines(node: yaml.Node, prefix: tuple = ()) -> dict[tuple, int]:
    """Map each key path of a YAML mapping to its 1-based line, for error messages."""
    lines: dict[tuple, int] = {}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            path = prefix + (key_node.value,)
            lines[path] = key_node.start_mark.line + 1
            lines.update(_key_lines(value_node, path))
    return lines


def _describe(error: dict) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown key"
    if error["type"] == "missing":
        return "required key is missing"
    return f"{error['msg']} (got {error['input']!r})"


def load_params(path: str | Path = "params.yaml") -> Params:
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: params file not found")
    text = path.read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text) or {}
        lines = _key_lines(yaml.compose(text))
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: invalid YAML: {exc}".replace("\n", " ")) from None
    if not isinstance(data, dict):
        raise ParamsError(f"{path}: top level must be a mapping of sections")
    try:
        return Params.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = tuple(str(part) for part in first["loc"])
        # Union types add the member type to loc (e.g. "str"); keep the longest real key path.
        while loc and loc not in lines and len(loc) > 1:
            loc = loc[:-1]
        where = f"{path}:{lines[loc]}" if loc in lines else str(path)
        more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise ParamsError(f"{where}: {'.'.join(loc)}: {_describe(first)}{more}") from None
