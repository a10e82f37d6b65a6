"""Token-length statistics of formatted rows: the percentiles in metrics/format.json and the length plot."""
from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(sorted_values: Sequence[int], q: float) -> int:
    """Nearest-rank percentile of sorted integers (0 for none)."""
    if not sorted_values:
        return 0
    return sorted_values[max(0, math.ceil(q * len(sorted_values)) - 1)]


def length_histogram(lengths: dict[str, list[int]], max_length: int, bins: int = 16) -> list[dict]:
    """Rows {tokens (bin upper edge), <split>: count} for the dvc length plot."""
    width = max(1, math.ceil(max_length / bins))
    rows = []
    for b in range(bins):
        low, high = b * width, (b + 1) * width
        rows.append({"tokens": high, **{split: sum(low < n <= high or (b == 0 and n == 0) for n in values)
                                        for split, values in lengths.items()}})
    return rows
