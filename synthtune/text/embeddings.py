"""Text embeddings for selection: `tfidf` (offline default) or `sentence-transformers:<model>`.

* `tfidf`: TF-IDF + TruncatedSVD, L2-normalized. It is a function of the whole pool (the
  vocabulary and the SVD basis come from it), so it is recomputed each run and never cached.
* `sentence-transformers:<model>`: a hub id (loaded from the local Hugging Face cache; nothing is
  downloaded when HF_HUB_OFFLINE=1) or a local folder. Each text's vector depends only on the
  model and the text, so vectors are cached in one SQLite file (synthtune.llm.cache) keyed by
  sha256(embedder fingerprint + text); a re-run embeds only texts it has not seen. The
  fingerprint is the hub commit of the model, or a hash of a local folder's files, so a changed
  model never reuses old vectors. The cache lives in $SYNTHTUNE_CACHE_DIR (default
  ~/.cache/synthtune), outside the DVC outputs, like the Hugging Face cache.
"""
from __future__ import annotations

import hashlib
import logging
import os
from contextlib import closing
from pathlib import Path

import numpy as np

from synthtune.core.errors import ParamsError
from synthtune.llm.cache import Codec, KeyValueCache

log = logging.getLogger(__name__)

ST_PREFIX = "sentence-transformers:"
_ENCODE_CHUNK = 1024         # texts embedded and committed at a time: a crash loses at most one chunk
FLOAT32_VECTOR = Codec("BLOB", lambda vector: np.asarray(vector, dtype=np.float32).tobytes(),
                       lambda blob: np.frombuffer(blob, dtype=np.float32))


def default_cache_path() -> Path:
    root = os.environ.get("SYNTHTUNE_CACHE_DIR")
    if not root:
        root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "synthtune"
    return Path(root) / "embeddings.sqlite"


def embed_tfidf(texts: list[str], dims: int, seed: int) -> np.ndarray:
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.preprocessing import normalize

    matrix = TfidfVectorizer(sublinear_tf=True, min_df=1).fit_transform(texts)
    dims = min(dims, matrix.shape[1] - 1, matrix.shape[0] - 1)
    if dims < 2:  # too few records or terms for SVD: use the sparse vectors densely
        return normalize(matrix).toarray().astype(np.float32)
    return normalize(TruncatedSVD(n_components=dims, random_state=seed).fit_transform(matrix)).astype(np.float32)


def _unavailable(model: str, reason: str) -> ParamsError:
    reason = " ".join(str(reason).split()).split(". ")[0][:200]     # its first sentence, on one line
    return ParamsError(f"select.embedder: sentence-transformers model {model!r} is not available locally ({reason}); "
                       "download it once with network access (HF_HUB_OFFLINE=0), give a local folder, "
                       "or use select.embedder: tfidf")


def model_fingerprint(model: str) -> str:
    """A local folder: sha256 of its files; a hub id: the commit of its locally cached snapshot."""
    path = Path(model).expanduser()
    if path.is_dir():
        digest = hashlib.sha256()
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(str(file.relative_to(path)).encode() + b"\0")
            with open(file, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
        return "sha256:" + digest.hexdigest()
    from huggingface_hub import snapshot_download

    candidates = [model] if "/" in model else [model, f"sentence-transformers/{model}"]
    error: Exception | None = None
    for repo_id in candidates:
        try:
            return f"{repo_id}@{Path(snapshot_download(repo_id, local_files_only=True)).name}"
        except Exception as exc:  # noqa: BLE001 - any failure means: not in the local cache
            error = exc
    raise _unavailable(model, error)


def load_sentence_transformer(model: str):
    try:
        from sentence_transformers import SentenceTransformer

        return SentenceTransformer(model)
    except Exception as exc:  # noqa: BLE001 - OSError offline, ValueError for a bad folder, ...
        raise _unavailable(model, exc) from None


def open_vector_cache(path: Path) -> KeyValueCache:
    """sha256 key -> float32 vector in the llm layer's one SQLite cache; the table layout
    (`vectors (key, vector BLOB)`) is that of the caches written before, so they stay warm."""
    return KeyValueCache(path, table="vectors", column="vector", codec=FLOAT32_VECTOR, timeout_s=60.0,
                         name="embedding")


def embed_sentence_transformer(texts: list[str], model: str, cache_path: Path) -> tuple[np.ndarray, dict]:
    fingerprint = model_fingerprint(model)
    keys = [hashlib.sha256(f"{ST_PREFIX}{fingerprint}\n{text}".encode()).hexdigest() for text in texts]
    with closing(open_vector_cache(cache_path)) as cache:
        vectors = cache.get_many(sorted(set(keys)))
        missing = {key: text for key, text in zip(keys, texts) if key not in vectors}
        if missing:
            encoder = load_sentence_transformer(model)
            todo = list(missing.items())
            log.info("embedding %d new texts with %s (%d cached)", len(todo), model, len(vectors))
            for start in range(0, len(todo), _ENCODE_CHUNK):
                chunk = todo[start:start + _ENCODE_CHUNK]
                encoded = encoder.encode([text for _, text in chunk], convert_to_numpy=True,
                                         show_progress_bar=len(todo) > _ENCODE_CHUNK)
                fresh = {key: vec.astype(np.float32) for (key, _), vec in zip(chunk, encoded)}
                cache.put_many(fresh.items())      # committed by the cache's writer while the next chunk embeds
                vectors.update(fresh)
            cache.flush()                          # a write that failed is an error here, not a cold cache later
    matrix = np.stack([vectors[key] for key in keys]) if keys else np.zeros((0, 0), np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    stats = {"embedded_texts": len(missing), "embedding_cache_hits": len(texts) - sum(k in missing for k in keys)}
    return matrix / np.where(norms == 0, 1, norms), stats


def embed_texts(texts: list[str], embedder: str, dims: int, seed: int,
                cache_path: Path | None = None) -> tuple[np.ndarray, dict]:
    """L2-normalized float32 vectors, one row per text, and counts (embedded vs served from cache)."""
    if embedder == "tfidf":
        return embed_tfidf(texts, dims, seed), {"embedded_texts": len(texts), "embedding_cache_hits": 0}
    if embedder.startswith(ST_PREFIX):
        return embed_sentence_transformer(texts, embedder[len(ST_PREFIX):], cache_path or default_cache_path())
    raise ParamsError(f"select.embedder: unknown embedder {embedder!r} (tfidf | sentence-transformers:<model>)")
