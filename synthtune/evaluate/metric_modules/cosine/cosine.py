"""Cosine similarity of prediction and reference embeddings (the David & Goliath RAG score).

embedder="tfidf" (offline default): hashed word uni+bigrams weighted by TF-IDF whose IDF is fitted
on `corpus` (default: the references), L2-normalized. Hashing keeps words the corpus never saw
(they get the largest IDF) instead of dropping them, so an answer made of unseen words is
dissimilar, and the vector space depends on the corpus only: models scored against the same
references share it. `sentence-transformers:<model>` (or a bare model name / local path): a
sentence-transformers model from the local cache, normalized embeddings. Returns the mean, the median and the per-pair scores.
"""
import datasets
import evaluate

_DESCRIPTION = "Mean cosine similarity (0-1 for tfidf) of prediction vs reference embeddings."
_MODELS = {}


def tfidf_vectors(corpus, *texts_lists):
    from sklearn.feature_extraction.text import HashingVectorizer, TfidfTransformer

    hasher = HashingVectorizer(n_features=2 ** 20, ngram_range=(1, 2), alternate_sign=False, norm=None)
    tfidf = TfidfTransformer(sublinear_tf=True).fit(hasher.transform(corpus))
    return [tfidf.transform(hasher.transform(texts)) for texts in texts_lists]


def sentence_vectors(model_name, *texts_lists):
    from sentence_transformers import SentenceTransformer

    if model_name not in _MODELS:
        _MODELS[model_name] = SentenceTransformer(model_name, device="cpu")
    return [_MODELS[model_name].encode(list(texts), normalize_embeddings=True, show_progress_bar=False)
            for texts in texts_lists]


class Cosine(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation="",
            inputs_description="predictions, references: lists of str; embedder: str; corpus: list of str",
            features=datasets.Features({"predictions": datasets.Value("string"),
                                        "references": datasets.Value("string")}))

    def _compute(self, predictions, references, embedder="tfidf", corpus=None):
        import numpy as np

        if not predictions:
            return {"cosine": 0.0, "cosine_median": 0.0, "scores": []}
        if embedder == "tfidf":
            a, b = tfidf_vectors(list(corpus or references), predictions, references)
            scores = np.asarray(a.multiply(b).sum(axis=1)).ravel()
        else:
            a, b = sentence_vectors(embedder.removeprefix("sentence-transformers:"), predictions, references)
            scores = (a * b).sum(axis=1)
        scores = [float(s) for s in scores]
        return {"cosine": float(np.mean(scores)), "cosine_median": float(np.median(scores)), "scores": scores}
