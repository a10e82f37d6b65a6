"""What the teacher did and what it may still spend: counters, the cost budget, dry-run estimates.

The budget reserves the worst case of a request (its prompt plus `max_tokens` of answer) before it
is sent and releases the reservation when the answer is counted, so concurrent requests can never
cross `teacher.max_cost_usd` together.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from synthtune.core.config import TeacherParams
from synthtune.llm.errors import BudgetExceeded
from synthtune.llm.requests import Call
from synthtune.llm.tokens import TokenCounter


@dataclass
class TeacherStats:
    requests: int = 0           # asked of the teacher (after de-duplication, repairs included)
    cache_hits: int = 0
    sent: int = 0               # HTTP attempts / generation rows actually made
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    repaired: int = 0
    quarantined: int = 0
    seconds: float = 0.0        # wall time spent waiting for answers that were sent (not cache hits)
    # dry run: estimates of what a real run would send
    to_send: int = 0
    est_prompt_tokens: int = 0
    est_completion_tokens: int = 0
    max_completion_tokens: int = 0
    lines: list = field(default_factory=list)

    def metrics(self, prefix: str = "teacher_") -> dict:
        keys = ("requests", "cache_hits", "sent", "retries", "prompt_tokens", "completion_tokens", "repaired",
                "quarantined")
        out = {prefix + k: getattr(self, k) for k in keys}
        out[prefix + "cost_usd"] = round(self.cost_usd, 6)
        if self.sent:       # only when something was sent: a template or warm re-run keeps identical metrics
            out[prefix + "seconds"] = round(self.seconds, 1)
        return out


class Budget:
    """Costs at `price` (USD per input, output token) against `limit` (None: no limit).

    `counter` is called only when a price is set: loading a tokenizer is not free.
    """

    def __init__(self, limit: float | None, price: tuple[float, float], counter: Callable[[], TokenCounter],
                 stats: TeacherStats):
        self.limit, self.price, self._counter, self.stats = limit, price, counter, stats
        self.reserved = 0.0

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return prompt_tokens * self.price[0] + completion_tokens * self.price[1]

    def worst_cost(self, call: Call) -> float:
        if not any(self.price):
            return 0.0
        return self.cost(self._counter().count_messages(call.messages), call.max_tokens)

    def reserve(self, call: Call) -> bool:
        """Reserve the worst case of `call`; False when it could cross the limit."""
        worst = self.worst_cost(call)
        if self.limit is not None and self.stats.cost_usd + self.reserved + worst > self.limit:
            return False
        self.reserved += worst
        return True

    def fits(self) -> bool:
        """Whether what is spent and reserved is still within the limit."""
        return self.limit is None or self.stats.cost_usd + self.reserved <= self.limit

    def release(self, call: Call) -> None:
        self.reserved -= self.worst_cost(call)

    def exceeded(self, done: int, total: int, kept_in: Path | None) -> BudgetExceeded:
        where = f" (kept in {kept_in})" if kept_in is not None else ""
        return BudgetExceeded(
            f"teacher.max_cost_usd: stopped before crossing ${self.limit:g} "
            f"(${self.stats.cost_usd:.4f} spent); {done} of {total} answers done{where}; raise the "
            f"budget and re-run to continue")


def estimate(stats: TeacherStats, counter: TokenCounter, call: Call, text: str) -> None:
    """Count one dry-run request that would be sent (not a cache hit): what sending it would cost
    (`text`: the offline answer standing in for the teacher's)."""
    prompt = counter.count_messages(call.messages)
    stats.to_send += 1
    stats.est_prompt_tokens += prompt
    stats.est_completion_tokens += min(call.max_tokens, counter.count(text or ""))
    stats.max_completion_tokens += call.max_tokens
    last = next((m["content"] for m in reversed(call.messages) if m["role"] == "user"), "")
    stats.lines.append(f"{call.key[:12]}  prompt={prompt:5d}  max_tokens={call.max_tokens:5d}  "
                       f"T={call.temperature:g}  {' '.join(last.split())[:80]}")


def dry_run_report(stats: TeacherStats, price: tuple[float, float], counter_name: str, params: TeacherParams,
                   backend: str, model: str) -> str:
    """One line per request that would be sent, then a summary of counts, tokens and cost."""
    s, (pin, pout) = stats, price
    est = s.est_prompt_tokens * pin + s.est_completion_tokens * pout
    worst = s.est_prompt_tokens * pin + s.max_completion_tokens * pout
    where = f" at {params.base_url or 'api.openai.com'}" if backend == "openai" else ""
    budget = (f"; teacher.max_cost_usd {params.max_cost_usd:g}"
              f"{' (would be crossed)' if params.max_cost_usd is not None and worst > params.max_cost_usd else ''}"
              if params.max_cost_usd is not None else "")
    summary = (f"dry run: teacher {backend} {model}{where}: {s.requests} requests "
               f"({s.cache_hits} cached, {s.to_send} to send); prompt tokens {s.est_prompt_tokens:,} "
               f"[{counter_name}]; completion tokens ~{s.est_completion_tokens:,} (at most "
               f"{s.max_completion_tokens:,}); estimated cost ${est:.4f} (at most ${worst:.4f}){budget}")
    return "\n".join([*s.lines, summary])
