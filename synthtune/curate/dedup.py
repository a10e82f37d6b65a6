"""Data hygiene before selection: near-duplicate removal (MinHash LSH) and decontamination.

Near-duplicates: each record's text becomes a set of word shingles, hashed into a MinHash
signature; LSH finds candidate pairs, their estimated Jaccard confirms them, and of each connected group
only the first record (by id, so the result does not depend on input order) is kept.
Decontamination: a training record that shares any word n-gram (n=13 by default, the usual
choice for benchmark leakage) with a val or test record is removed and reported.
"""
from __future__ import annotations

import re
from collections.abc import Iterable

WORD = re.compile(r"\w+")


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


def shingles(text: str, n: int) -> set[str]:
    tokens = words(text)
    if len(tokens) < n:
        return {" ".join(tokens)} if tokens else set()
    return {" ".join(tokens[i:i + n]) for i in range(len(tokens) - n + 1)}


def near_duplicates(texts: list[str], keys: list[str], threshold: float, shingle: int = 3,
                    num_perm: int = 128, seed: int = 1) -> set[int]:
    """Indices of records to drop: every member of a near-duplicate group but its smallest key."""
    from datasketch import MinHash, MinHashLSH

    # LSH bands tuned to miss few true pairs (false negatives weigh 0.8); each candidate pair is
    # then confirmed by its estimated Jaccard, which restores precision.
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, weights=(0.2, 0.8))
    signatures = MinHash.bulk([[s.encode("utf-8") for s in sorted(shingles(t, shingle))] for t in texts],
                              num_perm=num_perm, seed=seed)
    for index, signature in enumerate(signatures):
        lsh.insert(index, signature)
    parent = list(range(len(texts)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for index, signature in enumerate(signatures):
        for other in lsh.query(signature):
            if other != index and signature.jaccard(signatures[other]) >= threshold:
                parent[find(other)] = find(index)
    keep: dict[int, int] = {}   # component root -> member with the smallest key (order-independent)
    for index in range(len(texts)):
        root = find(index)
        if root not in keep or keys[index] < keys[keep[root]]:
            keep[root] = index
    return set(range(len(texts))) - set(keep.values())


def contaminated(train_texts: list[str], eval_texts: Iterable[str], n: int) -> set[int]:
    """Indices of training texts sharing at least one word n-gram with any eval text."""
    eval_grams: set[str] = set()
    for text in eval_texts:
        tokens = words(text)
        eval_grams.update(" ".join(tokens[i:i + n]) for i in range(len(tokens) - n + 1))
    hits = set()
    for index, text in enumerate(train_texts):
        tokens = words(text)
        if any(" ".join(tokens[i:i + n]) in eval_grams for i in range(len(tokens) - n + 1)):
            hits.add(index)
    return hits
