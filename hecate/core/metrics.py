"""Numbers for operators: Prometheus metrics, off unless METRICS_ENABLED.

Call sites report an event with one call (``metrics.login_failed()``). While metrics are off that
call is one global lookup and a return, and prometheus_client is never imported: import time is
FaaS cold-start time.

The state is process-wide, not per app: prometheus_client's values (and, in multiprocess mode, its
files, named by process id) belong to the process.

Multi-worker servers (``uvicorn --workers N``): a scrape reaches one worker, chosen by the kernel,
so a worker that exposed only its own counts would show about 1/N of the traffic, a different
share on every scrape, and per-worker labels would not fix that. With PROMETHEUS_MULTIPROC_DIR
set, prometheus_client's multiprocess mode keeps each worker's values in memory-mapped files in
that directory and every worker's /api/metrics sums the files of all of them.

Labels are bounded: requests are labelled by the operation of the spec (never the raw path, which
carries ids) and the status; mail failures by template; rate-limit hits by limit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

# Label of requests that matched no operation of the spec: unknown paths (404), unsupported
# methods (405), CORS preflights, the Swagger UI and the spec itself.
OTHER = "other"

_HANDLERS = "hecate.handlers."

_metrics: _Prometheus | None = None


class MetricsError(RuntimeError):
    """Metrics cannot work as configured (a multiprocess directory prometheus_client ignores)."""


class _Prometheus:
    def __init__(self, multiprocess_dir: Path | None) -> None:
        from prometheus_client import (
            CollectorRegistry,
            Counter,
            Histogram,
            disable_created_metrics,
            values,
        )

        # prometheus_client picks its value store once, at import, from PROMETHEUS_MULTIPROC_DIR.
        multiprocess = bool(getattr(values.ValueClass, "_multiprocess", False))
        if bool(multiprocess_dir) != multiprocess:
            raise MetricsError("PROMETHEUS_MULTIPROC_DIR must be set in the environment of the "
                               "server process itself (prometheus_client reads it at import)")
        self.multiprocess_dir = multiprocess_dir
        if multiprocess_dir is not None:
            multiprocess_dir.mkdir(parents=True, exist_ok=True)
        # `*_created` series (multiprocess mode has none): twice the series for a timestamp
        # Prometheus does not need.
        disable_created_metrics()
        # Multiprocess mode collects from the files at scrape time; no registry holds the metrics.
        self.registry = None if multiprocess else CollectorRegistry(auto_describe=True)
        kwargs: dict[str, Any] = {"registry": self.registry}
        self.requests = Counter("hecate_requests", "HTTP requests answered, by operation of the "
                                "API (operationId without hecate.handlers.) and status",
                                ["operation", "status"], **kwargs)
        self.latency = Histogram("hecate_request_duration_seconds", "Time to answer a request, "
                                 "by operation", ["operation"], **kwargs)
        self.login_failures = Counter("hecate_login_failures", "Sign-ins refused for a wrong "
                                      "email or password", **kwargs)
        self.rate_limited = Counter("hecate_rate_limit_hits", "Requests refused with 429 by a "
                                    "rate limit, by limit", ["limit"], **kwargs)
        self.reuse = Counter("hecate_refresh_token_reuse", "Refresh tokens presented again after "
                             "rotation (outside the grace): sessions ended as stolen", **kwargs)
        self.mail_failures = Counter("hecate_mail_failures", "Mails the transport could not "
                                     "send, by template", ["template"], **kwargs)
        self.database_errors = Counter("hecate_database_errors", "Requests answered 503 because "
                                       "the database (or the rate-limit store) failed, by store",
                                       ["store"], **kwargs)

    def exposition(self) -> tuple[bytes, str]:
        from prometheus_client import CollectorRegistry, exposition, generate_latest

        registry = self.registry
        if registry is None:
            from prometheus_client.multiprocess import MultiProcessCollector

            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=str(self.multiprocess_dir))
        # The classic text format every Prometheus version scrapes.
        content_type = getattr(exposition, "CONTENT_TYPE_PLAIN_0_0_4",
                               exposition.CONTENT_TYPE_LATEST)
        return generate_latest(registry), content_type


def enable(multiprocess_dir: Path | None = None) -> None:
    """Start counting in this process (idempotent: the first call's mode stays)."""
    global _metrics
    if _metrics is None:
        _metrics = _Prometheus(multiprocess_dir)


def enabled() -> bool:
    return _metrics is not None


def exposition() -> tuple[bytes, str]:
    """(body, content type) of the Prometheus text format."""
    if _metrics is None:
        raise MetricsError("metrics are not enabled")
    return _metrics.exposition()


def operation_label(operation_id: str | None) -> str:
    if not operation_id:
        return OTHER
    return operation_id.removeprefix(_HANDLERS)


def request_answered(operation_id: str | None, status: int, seconds: float) -> None:
    if _metrics is None:
        return
    operation = operation_label(operation_id)
    _metrics.requests.labels(operation, str(status)).inc()
    _metrics.latency.labels(operation).observe(seconds)


def login_failed() -> None:
    if _metrics is not None:
        _metrics.login_failures.inc()


def rate_limited(limit: str) -> None:
    if _metrics is not None:
        _metrics.rate_limited.labels(limit).inc()


def refresh_token_reused() -> None:
    if _metrics is not None:
        _metrics.reuse.inc()


def mail_failed(template: str) -> None:
    if _metrics is not None:
        _metrics.mail_failures.labels(template).inc()


def database_error(store: str = "database") -> None:
    if _metrics is not None:
        _metrics.database_errors.labels(store).inc()
