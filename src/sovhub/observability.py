"""Prometheus metrics (one registry per app) and structured JSON logs carrying request ids."""

from __future__ import annotations

import itertools
import json
import logging
import os
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["JsonFormatter", "Metrics", "configure_logging", "new_request_id", "request_id_var"]

request_id_var: ContextVar[str | None] = ContextVar("sovhub_request_id", default=None)

# Request ids need to be unique, not secret: 64 random bits per process (so replicas and restarts
# do not collide) plus a counter. uuid4() reads the kernel's random pool on every call, which
# cost several percent of a request's CPU on the gateway's hot path.
_ID_PREFIX = os.urandom(8).hex()
_ID_COUNTER = itertools.count(1)


def _reseed_ids() -> None:
    global _ID_PREFIX
    _ID_PREFIX = os.urandom(8).hex()


os.register_at_fork(after_in_child=_reseed_ids)  # a forked worker must not repeat its parent's ids


def new_request_id() -> str:
    """A 32-hex-character id (the shape of a uuid4 hex), unique across processes."""
    return f"{_ID_PREFIX}{next(_ID_COUNTER):016x}"

_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "sovhub_requests", "HTTP requests handled", ["method", "route", "status"], registry=r
        )
        self.latency = Histogram(
            "sovhub_request_duration_seconds", "Request latency", ["route"], buckets=_LATENCY_BUCKETS, registry=r
        )
        self.overhead = Histogram(
            "sovhub_gateway_overhead_seconds",
            "Time spent in the hub itself, excluding backends",
            ["route"],
            buckets=_OVERHEAD_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "sovhub_tokens", "Tokens processed", ["model", "kind"], registry=r
        )
        self.ttft = Histogram(
            "sovhub_time_to_first_token_seconds", "Time to first token", ["model"],
            buckets=_LATENCY_BUCKETS, registry=r,
        )
        self.in_flight = Gauge("sovhub_requests_in_flight", "Requests being handled", registry=r)
        self.energy_joules = Counter(
            "sovhub_energy_joules", "Energy of requests, PUE included", ["backend", "model"], registry=r
        )
        self.co2e_grams = Counter(
            "sovhub_co2e_grams", "Emissions of requests (market-based)", ["backend", "model"], registry=r
        )
        self.backend_errors = Counter(
            "sovhub_backend_errors", "Backend failures", ["backend"], registry=r
        )


class JsonFormatter(logging.Formatter):
    _skip = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        rid = request_id_var.get()
        if rid:
            entry["request_id"] = rid
        for key, value in vars(record).items():
            if key not in self._skip and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("sovhub")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
