"""Bench: graph-guided template dialogues, 2,000 per domain, timed end to end.

Times loading the catalog and graph, building the BM25 index and simulating 2,000 dialogues
(recipe and e-commerce), the work of one `generate` stage. Target (issue: graph-guided
dialogues): 2,000 dialogues <= 20 s on 2 cores. Writes bench/results/dialogue_speed.json.
"""
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from synthtune.generate.dialogue import get_domain, load_graph  # noqa: E402

N = 2000
TARGET_S = 20.0


def timed(domain: str, catalog: str) -> dict:
    start = time.perf_counter()
    simulator = get_domain(domain)
    dialogues = simulator.generate(simulator.load_catalog(ROOT / "data" / "seeds" / catalog),
                                   load_graph(ROOT / "data" / "seeds" / "graphs" / f"{domain}.json"),
                                   n=N, seed=42, max_turns=12)
    seconds = time.perf_counter() - start
    turns = sum(len(d["messages"]) for d in dialogues)
    return {"dialogues": len(dialogues), "turns": turns, "seconds": round(seconds, 2),
            "dialogues_per_s": round(len(dialogues) / seconds, 1), "target_s": TARGET_S,
            "passed": seconds <= TARGET_S}


def main() -> None:
    import bm25s  # noqa: F401  (import cost is not generation cost)

    results = {"recipe": timed("recipe", "recipes.json"), "ecommerce": timed("ecommerce", "products.json")}
    out = ROOT / "bench" / "results" / "dialogue_speed.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    for domain, r in results.items():
        print(f"{domain:10s} {r['dialogues']} dialogues ({r['turns']} turns) in {r['seconds']} s "
              f"[target <= {TARGET_S} s: {'ok' if r['passed'] else 'MISSED'}]")


if __name__ == "__main__":
    main()
