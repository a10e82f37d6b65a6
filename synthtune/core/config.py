"""Typed params: params.yaml is parsed into frozen pydantic models.

Unknown keys and wrong types are errors that name the key and its line in params.yaml:
    error: params.yaml:57: train.lr: Input should be a valid number (got '2e-4')
Strict mode means YAML must write numbers as numbers (`2.0e-4`, not `2e-4`, which YAML reads
as a string) and booleans as booleans.

Defaults: params.yaml is the source of truth. Every field default here equals the value the
shipped params.yaml gives it (tests/core/test_config.py checks it key by key), so code and tests
that build a section without naming every key get what a run of params.yaml would use; keys
params.yaml leaves unset (a source's `domain`, `teacher`, `mapping`, `options`,
`allow_outside_repo`, `license`) keep their documented defaults. Change a default in params.yaml and here together.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal, Union

from pydantic import (AfterValidator, Discriminator, Field, Tag, TypeAdapter, ValidationError,
                      field_validator, model_validator)
from pydantic_core import PydanticCustomError

from synthtune.core.errors import ParamsError
from synthtune.core.eval_params import (ApiParams, GenerationParams, OpenAIModelParams, PredictParams,  # noqa: F401
                                        RagParams, ScoreParams)
from synthtune.core.handover_params import CardsParams, ExportParams, ReportParams  # noqa: F401
from synthtune.core.params_base import Dtype, Section
from synthtune.core.params_yaml import keys_error, keys_message, read_params_yaml


class TinyModelParams(Section):
    vocab_size: int = Field(2048, ge=300)
    hidden_size: int = Field(128, ge=16)
    num_layers: int = Field(4, ge=1)
    num_heads: int = Field(4, ge=1)
    intermediate_size: int = Field(384, ge=16)
    max_position_embeddings: int = Field(1024, ge=64)
    pretrain_steps: int = Field(150, ge=0)
    pretrain_batch_size: int = Field(16, ge=1)
    pretrain_seq_len: int = Field(256, ge=16)
    pretrain_lr: float = Field(3.0e-3, gt=0)


class ModelParams(Section):
    name: str = "smollm2-135m-instruct"     # a packaged model, "tiny" (built offline), a .gguf file or a hub id
    revision: str = "main"                  # hub revision; resolved to a commit hash when loaded
    trust_remote_code: bool = False
    dtype: Dtype = "auto"                   # predict/rag weights; auto: bf16 where native (model/precision.py)
    tiny: TinyModelParams = TinyModelParams()


class TeacherPrice(Section):
    """USD per million tokens of one model (the provider's price list)."""
    input_per_mtok: float = Field(ge=0)
    output_per_mtok: float = Field(ge=0)


class TeacherParams(Section):
    """The teacher layer (synthtune.llm.teacher): backend, endpoint, retries, cost. The key is never here.

    `api_key_env` names the environment variable holding the API key; the key itself never
    enters params, dvc.lock, metrics, logs or the response cache.
    """
    backend: Literal["template", "openai", "hf"] = "template"   # default for sources without `teacher:`
    model: str = "gpt-4o-mini"              # API model name, or a local model id/path for `hf`
    base_url: str | None = None             # OpenAI-compatible endpoint; null: api.openai.com
    api_key_env: str | None = "OPENAI_API_KEY"   # null: no key (a local vLLM / Ollama server)
    tokenizer: str | None = None            # HF tokenizer for token counts when tiktoken does not know the model
    concurrency: int = Field(16, ge=1)      # requests in flight
    timeout_s: float = Field(60.0, gt=0)    # hard limit per request attempt
    max_retries: int = Field(6, ge=0)       # on 429, 5xx, timeouts, connection errors
    backoff_s: float = Field(1.0, ge=0)     # first backoff; doubles per retry, with jitter
    max_backoff_s: float = Field(60.0, ge=0)
    temperature: float = Field(0.7, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    max_tokens: int = Field(512, ge=1)
    json_mode: bool = True                  # send response_format=json_object for JSON requests
    json_schema: bool = True                # ... json_schema with the request's schema (refused: json_object)
    batch_size: int = Field(8, ge=1)        # `hf` backend
    prices: dict[str, TeacherPrice] = Field(default_factory=lambda: {   # model -> USD per 1M tokens
        "gpt-4o-mini": TeacherPrice(input_per_mtok=0.15, output_per_mtok=0.6),
        "gpt-4o": TeacherPrice(input_per_mtok=2.5, output_per_mtok=10.0)})
    max_cost_usd: float | None = Field(None, ge=0)   # stop before crossing; null: no limit
    cache_dir: str = "data/teacher_cache"   # one folder per source (a persisted DVC output)


TeacherBackend = Literal["template", "openai", "hf"]

_loader_kinds: Mapping[str, object] | None = None    # synthtune.generate.loaders.LOADERS, once imported


def use_loader_kinds(kinds: Mapping[str, object]) -> None:
    """Check loader sources' `kind` against `kinds` (live: kinds registered later count). The loaders
    call it on import (core never imports generate), so the generate stage, which imports them before
    it loads params, refuses an unregistered kind naming its line; until then a kind need only be a name."""
    global _loader_kinds
    _loader_kinds = kinds


class SourceParams(Section):
    """One entry of `sources`: a generator (`dialogues`, `docqa`) or a loader of the user's own data.

    A union discriminated by `kind`: each kind takes exactly its own keys (DialoguesSourceParams,
    DocQASourceParams, LoaderSourceParams), so a key of another kind is an unknown key. `path` is
    the stage's input, interpolated into its cmd and deps by dvc.yaml: the catalog for dialogues
    (the state graph is data/seeds/graphs/<domain>.json), the documents for docqa, the data file for
    loaders. `SourceParams(kind=..., ...)` builds the model of that kind.
    """
    kind: str
    path: str
    domain: str = "general"
    license: str | None = None               # the data's licence (SPDX id), for the dataset card; null: not declared

    def __new__(cls, *args, **kwargs):
        if cls is SourceParams and "kind" in kwargs:
            cls = source_params_class(kwargs["kind"])
        return super().__new__(cls)

    @classmethod
    def model_validate(cls, obj, **kwargs):
        if cls is SourceParams:      # dispatch on `kind`, as in `sources` of Params
            return TypeAdapter(AnySource).validate_python(obj, **kwargs)
        return super().model_validate(obj, **kwargs)


class DialoguesSourceParams(SourceParams):
    """Graph-guided task-oriented dialogues of `domain` (synthtune.generate.dialogue)."""
    kind: Literal["dialogues"]
    teacher: TeacherBackend | None = None    # template: the offline simulator; null: teacher.backend
    n_dialogues: int = Field(300, ge=1)
    max_turns: int = Field(5, ge=3)         # user turns per dialogue at most
    use_graph: bool = True                   # false: the no-graph ablation
    reasks: int = Field(2, ge=0)             # LLM voicing: re-asks of an unusable turn before its template text
    # LLM voicing: a voiced user turn must read as its own intent, by this embedder's cosine to the
    # source's template wordings of each intent (IntentCheck); null: off
    intent_check: str | None = "sentence-transformers:minilm"
    intent_margin: float = Field(0.15, ge=0.0, le=2.0)   # cosine lead of another intent that fails a turn

    @field_validator("intent_check")
    @classmethod
    def _sentence_embedder(cls, embedder: str | None) -> str | None:
        # tfidf fits a new space per call: the wordings and the voiced texts would not share one
        if embedder is not None and not embedder.startswith("sentence-transformers:"):
            raise PydanticCustomError("intent_check", "needs a sentence-transformers:<model> embedder or null")
        return embedder


class DocQASourceParams(SourceParams):
    """Document-grounded QA (synthtune.generate.docqa): chunks in teacher tokens, one question each."""
    kind: Literal["docqa"]
    teacher: TeacherBackend | None = None    # null: teacher.backend
    chunk_tokens: int = Field(128, ge=16)
    chunk_overlap: int = Field(24, ge=0)
    min_length_percentile: float = Field(25.0, ge=0, le=100)   # drop chunks shorter than this percentile
    min_grounding: float = Field(0.3, ge=-1, le=1)    # answer-chunk cosine below it: quarantined (ungrounded)
    grounding_embedder: str = "sentence-transformers:minilm"   # for that cosine: minilm | tfidf | sentence-transformers:<folder>


class ApiCodeSourceParams(SourceParams):
    """API-grounded code records (synthtune.generate.api_code): `path` is the API document(s)."""
    kind: Literal["api_code"]
    teacher: TeacherBackend | None = None    # template: snippets by rule from the signatures; null: teacher.backend
    n_records: int = Field(40, ge=1)         # one per function first, then pairs sharing a callback
    reasks: int = Field(1, ge=0)             # LLM: re-asks of a snippet that misses its function
    text_records: bool = False               # also each snippet as a content-only `text` record (a Lua
                                             # file, as luacoder's code corpus): format.template text trains
                                             # on them, the chat templates skip and count them


class LoaderSourceParams(SourceParams):
    """The user's own file through the loader of its `kind` (synthtune.generate.loaders.LOADERS)."""
    kind: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    mapping: dict[str, str] = Field(default_factory=dict)     # field renames, e.g. {instruction: prompt}
    options: dict[str, str | int | float | bool | None] = Field(default_factory=dict)   # e.g. {lang: en}
    # A `path` (or hf `data_files`) outside the repository is refused unless this is true: a typo'd
    # `../..` would otherwise read (and DVC track) any file the user can read, e.g. ~/.ssh or /etc.
    allow_outside_repo: bool = False

    @property
    def teacher(self) -> None:
        """Loaders prompt no teacher (callers open `teacher.backend`, unused)."""
        return None

    @field_validator("kind")
    @classmethod
    def _registered(cls, kind: str) -> str:
        if _loader_kinds is not None and kind not in _loader_kinds:
            known = ", ".join(sorted({*GENERATOR_SOURCES, *_loader_kinds}))
            raise PydanticCustomError("source_kind", "unknown source kind (known: {known})", {"known": known})
        return kind


GENERATOR_SOURCES: dict[str, type[SourceParams]] = {"dialogues": DialoguesSourceParams,
                                                    "docqa": DocQASourceParams, "api_code": ApiCodeSourceParams}
_LOADER_TAG = "loader"


def source_params_class(kind: object) -> type[SourceParams]:
    """The params model of a source `kind`: its generator's, or the loaders' for any other kind."""
    return GENERATOR_SOURCES.get(kind, LoaderSourceParams) if isinstance(kind, str) else LoaderSourceParams


def _source_tag(value: object) -> str:
    kind = value.get("kind") if isinstance(value, dict) else getattr(value, "kind", None)
    return kind if isinstance(kind, str) and kind in GENERATOR_SOURCES else _LOADER_TAG


AnySource = Annotated[
    Union[tuple(Annotated[model, Tag(tag)] for tag, model in
                [*GENERATOR_SOURCES.items(), (_LOADER_TAG, LoaderSourceParams)])],
    Discriminator(_source_tag)]


class PrepareParams(Section):
    val_fraction: float = Field(0.1, ge=0, lt=1)
    test_fraction: float = Field(0.1, ge=0, lt=1)

    @model_validator(mode="after")
    def _train_is_left(self):
        # each fraction alone is below 1, but together they can take every group from train
        if self.val_fraction + self.test_fraction >= 1:
            raise keys_error("fraction_sum", "must sum to less than 1, or nothing is left to train on (got {got})",
                             ("val_fraction", "test_fraction"), join=" + ",
                             got=f"{self.val_fraction!r} + {self.test_fraction!r}")
        return self


class SelectParams(Section):
    near_dup: bool = True
    near_dup_threshold: float = Field(0.9, gt=0, le=1)      # MinHash LSH Jaccard on word 3-gram shingles
    decontam_ngram: int = Field(13, ge=0)                    # 0: no decontamination
    decontam_scope: Literal["prompts", "all"] = "prompts"    # prompts: user turns (or raw text)
    strategy: Literal["all", "random", "cluster_quota"] = "cluster_quota"
    quota: Literal["proportional", "uniform"] = "proportional"
    n_samples: int = Field(400, ge=1)
    embedder: str = Field("sentence-transformers:minilm", pattern=r"^(tfidf|sentence-transformers:\S.*)$")   # or sentence-transformers:<model>
    svd_dims: int = Field(64, ge=2)                          # tfidf only
    clustering: Literal["kmeans", "community"] = "kmeans"
    n_clusters: int = Field(8, ge=1)                         # kmeans only
    community_threshold: float = Field(0.75, ge=-1, le=1)    # community: cosine to the centre
    community_min_size: int = Field(10, ge=1)
    community_outliers: Literal["drop", "keep"] = "drop"     # keep: the outliers form one more cluster
    umap_map: bool = False                                   # true: UMAP (bytes machine-dependent; selection_map.py)
    map_max_points: int = Field(4000, ge=1)                  # the map shows a seeded sample of the pool


class FormatParams(Section):
    # chat: tokenizer chat template (messages) | qa, alpaca, seq2seq, syntod: prompt/completion | text: raw
    template: Literal["chat", "qa", "alpaca", "seq2seq", "syntod", "text"] = "chat"
    max_length: int = Field(512, ge=16)
    instruction: bool = True                    # annotated dialogues start with a system message: intents + format
    overflow: Literal["drop", "truncate_turns"] = "truncate_turns"
    few_shot_k: int = Field(0, ge=0)            # nearest train examples of the same source as shots; 0: off
    few_shot_budget: int = Field(512, ge=16)    # tokens the prompt may reach with its shots


class LoraParams(Section):
    r: int = Field(16, ge=1)
    alpha: int = Field(32, ge=1)
    dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: str | list[str] = "all-linear"   # "all-linear", a list of module names, or a regex


class QloraParams(Section):
    """4-bit base weights for `train.method: qlora` (bitsandbytes BitsAndBytesConfig)."""
    quant_type: Literal["nf4", "fp4"] = "nf4"
    double_quant: bool = True
    compute_dtype: Literal["bfloat16", "float16", "float32"] = "bfloat16"


class FreezeParams(Section):
    """Layer freezing for `train.method: full` (the seed SFT project's flags), by parameter name."""
    embeddings: bool = False     # token/position embeddings (tied LM head included)
    norms: bool = False          # LayerNorm / RMSNorm weights
    attention: bool = False      # self-attention projections
    mlp: bool = False            # feed-forward projections
    other: bool = False          # anything else (e.g. an untied lm_head)
    layers_not_to_freeze: list[int | str] = Field(default_factory=list)  # layer indices or name substrings


class TrainParams(Section):
    method: Literal["lora", "qlora", "full"] = "lora"
    dtype: Dtype = "auto"                       # mixed precision: auto = bf16 autocast where native, else fp32
    lr: float = Field(2.0e-3, gt=0)
    epochs: float = Field(1.0, gt=0)
    max_steps: int = 144
    batch_size: int = Field(4, ge=1)
    grad_accum: int = Field(1, ge=1)
    warmup_ratio: float = Field(0.05, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float = Field(1.0, gt=0)
    lr_scheduler: str = "cosine"
    eval_steps: int = Field(72, ge=1)
    logging_steps: int = Field(4, ge=1)
    group_by_length: bool = True
    packing: bool = False
    gradient_checkpointing: bool = False        # recompute activations: less memory, ~25% slower
    save_steps: int = Field(72, ge=0)            # checkpoint every N steps (resume, best model); 0: none
    load_best: bool = True                       # keep the checkpoint with the lowest eval_loss
    early_stopping_patience: int = Field(0, ge=0)  # evaluations without improvement before stopping; 0: off
    resume: bool = True                          # continue from the last checkpoint of the same run
    launcher: Literal["python", "accelerate"] = "python"
    accelerate_config: str = "configs/accelerate/ddp.yaml"
    num_processes: int = Field(0, ge=0)          # 0: as in accelerate_config
    lora: LoraParams = LoraParams()
    qlora: QloraParams = QloraParams()
    freeze: FreezeParams = FreezeParams()


SOURCE_NAME = r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$"


def _source_name(name: str) -> str:
    # a source name becomes the stage generate@<name>, a word of its dvc.yaml cmd and data/raw/<name>.jsonl:
    # a space splits the cmd (an argparse usage dump), a leading '-' reads as an option, '/' makes a folder
    if not re.fullmatch(SOURCE_NAME, name):
        raise PydanticCustomError("source_name", "a source name may hold only letters, digits, '_', '.' and '-', "
                                  "and may not start with '.' or '-' (it names the stage generate@<name> and its files)")
    return name


class Params(Section):
    seed: int = 42
    model: ModelParams = ModelParams()
    sources: dict[Annotated[str, AfterValidator(_source_name)], AnySource] = Field(min_length=1)   # nothing to prepare else
    teacher: TeacherParams = TeacherParams()
    prepare: PrepareParams = PrepareParams()
    select: SelectParams = SelectParams()
    format: FormatParams = FormatParams()
    train: TrainParams = TrainParams()
    predict: PredictParams = PredictParams()
    api: ApiParams = ApiParams()
    score: ScoreParams = ScoreParams()
    rag: RagParams = RagParams()
    export: ExportParams = ExportParams()
    cards: CardsParams = CardsParams()
    report: ReportParams = ReportParams()


def _describe(error: dict, data: dict, loc: tuple) -> str:
    if error["type"] == "extra_forbidden":
        if len(loc) == 3 and loc[0] == "sources":   # a key of another source kind
            entry = (data.get("sources") or {}).get(loc[1])
            kind = entry.get("kind") if isinstance(entry, dict) else None
            allowed = ", ".join(sorted(source_params_class(kind).model_fields))
            return f"unknown key for a {kind!r} source (allowed: {allowed})"
        return "unknown key"
    if error["type"] == "missing":
        return "required key is missing"
    if "keys" in (error.get("ctx") or {}):   # keys_error: its message says what it got
        return error["msg"]
    return f"{error['msg']} (got {error['input']!r})"


def _key_path(loc: tuple) -> tuple:
    """The params key path of an error location, without the source union's member tag."""
    loc = tuple(str(part) for part in loc)
    if len(loc) >= 3 and loc[0] == "sources" and loc[2] in {*GENERATOR_SOURCES, _LOADER_TAG}:
        loc = loc[:2] + loc[3:]
    return loc


def load_params(path: str | Path = "params.yaml") -> Params:
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: params file not found")
    data, lines = read_params_yaml(path, path.read_text(encoding="utf-8"))   # refuses duplicate keys
    data = data or {}
    if not isinstance(data, dict):
        raise ParamsError(f"{path}: top level must be a mapping of sections")
    try:
        return Params.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = _key_path(first["loc"])
        more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        if "keys" in (first.get("ctx") or {}):   # a model validator's keys_error: name its keys
            raise ParamsError(keys_message(path, lines, loc, first["ctx"], _describe(first, data, loc)) + more) from None
        # Union types add the member type to loc (e.g. "str"); keep the longest real key path,
        # and name a missing key under the entry that lacks it (the entry's line).
        missing = loc[-1:] if first["type"] == "missing" and len(loc) > 1 else ()
        loc = loc[:-1] if missing else loc
        while loc and loc not in lines and len(loc) > 1:
            loc = loc[:-1]
        where = f"{path}:{lines[loc]}" if loc in lines else str(path)
        raise ParamsError(f"{where}: {'.'.join(loc + missing)}: {_describe(first, data, loc)}{more}") from None

