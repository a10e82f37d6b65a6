"""Shared fixtures: offline by construction, a tiny tokenizer and 2-layer model built once per session."""
from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"          # any hub access fails loudly instead of waiting
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from synthtune.core.config import TinyModelParams  # noqa: E402

TINY = TinyModelParams(vocab_size=400, hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64,
                       max_position_embeddings=256, pretrain_steps=0)


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def dialogues() -> list[dict]:
    from synthtune.generate.dialogue import get_domain, load_graph

    recipe = get_domain("recipe")
    return recipe.generate(recipe.load_catalog(ROOT / "data/seeds/recipes.json"),
                           load_graph(ROOT / "data/seeds/graphs/recipe.json"), n=30, seed=7, max_turns=8)


@pytest.fixture(scope="session")
def tiny_tokenizer(dialogues):
    from synthtune.model.base_model import train_tokenizer
    from synthtune.model.formats import to_chat

    texts = [m["content"] for d in dialogues for m in to_chat(d)["messages"]]
    return train_tokenizer(texts, TINY.vocab_size)


@pytest.fixture(scope="session")
def tiny_model(tiny_tokenizer):
    from synthtune.model.base_model import build_tiny_model

    return build_tiny_model(tiny_tokenizer, TINY, seed=0).eval()


@pytest.fixture(scope="session")
def tiny_base_dir(tmp_path_factory, tiny_model, tiny_tokenizer) -> Path:
    """The tiny model saved as a base_model stage output (weights, tokenizer, manifest)."""
    import json

    path = tmp_path_factory.mktemp("base")
    tiny_model.save_pretrained(path, safe_serialization=True)
    tiny_tokenizer.save_pretrained(path)
    (path / "manifest.json").write_text(json.dumps({"name": "tiny", "path": "."}))
    return path


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """One intra-op thread in tests: the tiny models gain nothing from more, and on a busy 2-core
    machine two threads per process lose 10-50x to contention. Stages run in subprocesses keep
    torch's default."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
