import random

from synthtune.core.config import SelectParams
from synthtune.curate.dedup import contaminated, near_duplicates
from synthtune.curate.selection import select_records

VOCAB = [f"w{i}" for i in range(5000)]


def planted(n_unique: int, n_dups: int, seed: int = 0):
    """Unique 60-word texts plus near-copies (2 words changed: Jaccard of 3-shingles ~0.8) of some."""
    rng = random.Random(seed)
    texts = [" ".join(rng.choices(VOCAB, k=60)) for _ in range(n_unique)]
    pairs = []
    for d in range(n_dups):
        words = texts[d].split()
        for pos in rng.sample(range(60), 2):
            words[pos] = rng.choice(VOCAB)
        texts.append(" ".join(words))
        pairs.append((d, n_unique + d))
    return texts, pairs


def test_planted_near_duplicates_recall_and_precision():
    texts, pairs = planted(400, 100)
    keys = [f"{i:05d}" for i in range(len(texts))]
    dropped = near_duplicates(texts, keys, threshold=0.7)
    copies = {copy for _, copy in pairs}
    recall = len(dropped & copies) / len(copies)
    precision = len(dropped & copies) / max(1, len(dropped))
    assert recall >= 0.95 and precision >= 0.99


def test_the_same_member_is_kept_whatever_the_order():
    texts, _ = planted(50, 20, seed=3)
    keys = [f"{i:05d}" for i in range(len(texts))]
    order = list(range(len(texts)))
    random.Random(1).shuffle(order)
    kept_a = {keys[i] for i in set(range(len(texts))) - near_duplicates(texts, keys, 0.7)}
    shuffled = near_duplicates([texts[i] for i in order], [keys[i] for i in order], 0.7)
    kept_b = {keys[order[j]] for j in set(range(len(texts))) - shuffled}
    assert kept_a == kept_b


def test_contamination_by_ngram():
    train = ["the quick brown fox jumps over the lazy dog near the river bank today",
             "a completely different sentence about baking bread at home with flour"]
    evals = ["yesterday the quick brown fox jumps over the lazy dog near the river"]   # 12 shared words
    assert contaminated(train, evals, n=8) == {0}
    assert contaminated(train, evals, n=13) == set()


def test_select_reports_hygiene(dialogues):
    pool = dialogues[:20] + [dict(dialogues[0], id="zzz-copy")]
    params = SelectParams(strategy="all", decontam_ngram=13)
    selected, metrics = select_records(pool, params, seed=1, eval_records=[dialogues[1]])
    assert metrics["near_duplicates_removed"] == 1
    assert metrics["contaminated_removed"] >= 1          # dialogues[1] itself is in the pool
    assert all(r["id"] != dialogues[1]["id"] for r in selected)
