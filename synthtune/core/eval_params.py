"""The params sections of the evaluation phase: predict (decoding, models), score, api, rag.

Part of synthtune.core.config (which re-exports every class here); the same rule holds: each
default equals the value the shipped params.yaml gives it.
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError

from synthtune.core.params_base import Section


class GenerationParams(Section):
    """Decoding settings of synthtune.evaluate.predict (greedy unless do_sample)."""
    batch_size: int = Field(32, ge=1)
    max_new_tokens: int = Field(64, ge=1)
    do_sample: bool = False
    temperature: float = Field(1.0, gt=0)
    top_k: int = Field(50, ge=0)                      # 0: no top-k filter
    top_p: float = Field(1.0, gt=0, le=1)
    no_repeat_ngram_size: int = Field(0, ge=0)        # 0: off
    repetition_penalty: float = Field(1.0, gt=0)
    stop: list[str] = Field(default_factory=list)     # completions are cut at the first stop string


class OpenAIModelParams(Section):
    """A model behind an OpenAI-compatible endpoint, scored next to the local models."""
    base_url: str
    model: str
    api_key_env: str = "OPENAI_API_KEY"               # the key is read from this variable, never from params
    max_concurrency: int = Field(4, ge=1)
    timeout_s: float = Field(60.0, gt=0)


class PredictParams(GenerationParams):
    backend: Literal["hf", "vllm"] = "hf"             # runs the local models (base, tuned, adapters)
    batch_size: int = Field(32, ge=1)
    models: list[Literal["base", "tuned"]] = Field(default_factory=lambda: ["base", "tuned"])
    adapters: dict[str, str] = Field(default_factory=dict)             # more fine-tuned outputs: {name: dir}
    openai: dict[str, OpenAIModelParams] = Field(default_factory=dict)  # hosted models: {name: endpoint}
    max_dialogues: int = Field(14, ge=0)     # per source: the first N test examples of each; 0: all
    api_max_new_tokens: int = Field(128, ge=1)        # for the API-match prompts (code answers)
    perplexity: bool = True                           # assistant-token perplexity on val (hf backend)


class ScoreParams(Section):
    embedder: str = Field("sentence-transformers:minilm",
                          pattern=r"^(tfidf|sentence-transformers:\S.*)$")  # reply cosine, intent mapping
    bootstrap: int = Field(1000, ge=0)      # resamples of the test dialogues for 95% intervals; 0: off
    turn_buckets: list[int] = Field(default_factory=lambda: [1, 2, 4, 7])   # first turn of each position bucket
    confusion_model: str = "tuned"          # whose intents go to the confusion plot
    judge_max: int = Field(24, ge=0)        # turns the relevance judge rates (stage judge); 0: no judge
    judge: Literal["local", "openai"] = "local"   # local: the run's base model (hf) | openai: teacher endpoint
    judge_model: str = "gpt-4o-mini"        # the openai judge's model name (teacher.base_url, api_key_env)
    judge_min_accuracy: float = Field(0.6, ge=0, le=1)   # gold-vs-foreign accuracy below it: judge flagged


class ApiParams(Section):
    """The API-match inputs; dvc.yaml passes them to predict and score (synthtune/evaluate/metrics/api_match.py)."""
    docs: str = "data/seeds/api"                   # a JSON API document or a folder of them
    prompts: str = "data/seeds/api_prompts.jsonl"  # .jsonl or .csv with a "prompt" column


class RagParams(Section):
    chunk_tokens: int = Field(96, ge=8)
    chunk_overlap: int = Field(24, ge=0)
    top_k: int = Field(3, ge=1)                       # chunks retrieved per question
    retriever: Literal["tfidf", "bm25", "dense"] = "dense"   # the headline figures' retriever
    retrievers: list[Literal["tfidf", "bm25", "dense"]] = Field(   # each is measured and answered from
        default_factory=lambda: ["tfidf", "bm25", "dense"])
    dense_embedder: str = Field("sentence-transformers:minilm", pattern=r"^sentence-transformers:\S.*$")
    embedder: str = Field("sentence-transformers:minilm",
                          pattern=r"^(tfidf|sentence-transformers:\S.*)$")  # answer cosine embeddings
    max_new_tokens: int = Field(48, ge=1)
    batch_size: int = Field(32, ge=1)
    repetition_penalty: float = Field(1.0, gt=0)
    no_repeat_ngram_size: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _headline_is_measured(self):
        if self.retriever not in self.retrievers:
            raise PydanticCustomError("rag_retriever", "rag.retriever '{retriever}' must be one of rag.retrievers",
                                      {"retriever": self.retriever})
        return self

    def generation(self) -> GenerationParams:
        """RAG answers are greedy, with the seed benchmark's repetition penalty option."""
        return GenerationParams(batch_size=self.batch_size, max_new_tokens=self.max_new_tokens,
                                repetition_penalty=self.repetition_penalty,
                                no_repeat_ngram_size=self.no_repeat_ngram_size)
