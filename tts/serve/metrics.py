"""The server's Prometheus metrics, in a registry of its own (vLLM's engine counters live in the
global one; two servers in one process, as in tests, must not collide)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from tts.types import Usage

TOKEN_KINDS = ("prompt", "cached", "completion", "verifier")


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("tts_requests", "Chat completion requests, by strategy and HTTP status "
                                "(499: the client went away)", ["strategy", "status"], registry=r)
        self.tokens = Counter("tts_tokens", "Tokens the strategies spent, by kind (prompt includes cached)",
                              ["kind"], registry=r)
        self.latency = Histogram("tts_strategy_latency_seconds", "Time a strategy took to answer, by strategy",
                                 ["strategy"], registry=r,
                                 buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600))
        self.running = Gauge("tts_requests_running", "Requests being solved now", registry=r)
        self.waiting = Gauge("tts_requests_waiting", "Requests queued for a solving slot", registry=r)

    def spent(self, strategy: str, usage: Usage, seconds: float) -> None:
        for kind, value in zip(TOKEN_KINDS, (usage.prompt_tokens, usage.cached_tokens, usage.completion_tokens,
                                             usage.verifier_tokens)):
            self.tokens.labels(kind).inc(value)
        self.latency.labels(strategy).observe(seconds)

    def text(self) -> bytes:
        return generate_latest(self.registry)
