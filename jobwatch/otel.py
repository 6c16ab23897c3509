"""OpenTelemetry for jobwatch: a span per wait, and the client's metrics (`jobwatch[otel]`).

    from jobwatch.otel import OpenTelemetryHook

    async with jobwatch.Client(url, token=token, hooks=[OpenTelemetryHook()]) as cf:
        ...

Only `opentelemetry-api` is needed: without an SDK configured every call is a
no-op. Spans and instruments are named after OpenTelemetry's semantic
conventions where one applies (`http.client.request.duration`, `error.type`,
`server.address`), and carry a `jobwatch.` prefix elsewhere.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

try:
    from opentelemetry import metrics, trace
except ImportError as exc:  # pragma: no cover - exercised in a subprocess without it
    raise ImportError(
        "jobwatch.otel needs the OpenTelemetry API: pip install 'jobwatch[otel]'"
    ) from exc

from . import __version__
from ._hooks import (
    Hook,
    OutageBegan,
    OutageEnded,
    Polled,
    RateLimitPaused,
    RetryScheduled,
    WaitEnded,
    WaitStarted,
)

if TYPE_CHECKING:
    from opentelemetry.util.types import AttributeValue

__all__ = [
    "DETECTION_DELAY_BUCKETS",
    "HTTP_DURATION_BUCKETS",
    "METRICS",
    "OpenTelemetryHook",
    "WAIT_DURATION_BUCKETS",
]

#: The semantic conventions' advised boundaries for `http.client.request.duration`.
HTTP_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)
#: Jobs last from seconds (an app delete) to days (a broker's POLLING).
WAIT_DURATION_BUCKETS = (
    1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400, 604800,
)  # fmt: skip
#: Whole seconds on both stamps: finer buckets than a second would be noise.
DETECTION_DELAY_BUCKETS = (0, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 60, 120, 300)
#: The instruments this hook records, by name: (kind, unit, what it measures).
METRICS = {
    "http.client.request.duration": ("histogram", "s", "Duration of each poll (GET of a job)"),
    "jobwatch.poll.retries": ("counter", "{retry}", "Failed polls that will be tried again"),
    "jobwatch.wait.active": ("updowncounter", "{wait}", "Waits going on now"),
    "jobwatch.wait.duration": ("histogram", "s", "How long each wait lasted"),
    "jobwatch.job.detection_delay": (
        "histogram",
        "s",
        "From a job's terminal updated_at to the poll that saw it",
    ),
    "jobwatch.outages": ("counter", "{outage}", "Times the API was found down"),
    "jobwatch.outage.duration": ("histogram", "s", "How long the API was down"),
    "jobwatch.rate_limit.pause.duration": (
        "histogram",
        "s",
        "How much longer each 429 held every request",
    ),
}

_Attributes = dict[str, "AttributeValue"]


class OpenTelemetryHook(Hook):
    """Emits a span per wait and the metrics in `METRICS`; one hook may serve many clients.

    Args:
        tracer_provider: where spans go (default: the global provider).
        meter_provider: where metrics go (default: the global provider).
    """

    def __init__(
        self,
        *,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
    ) -> None:
        self._tracer = trace.get_tracer("jobwatch", __version__, tracer_provider=tracer_provider)
        meter = metrics.get_meter("jobwatch", __version__, meter_provider=meter_provider)

        def histogram(name: str, buckets: tuple[float, ...] | None = None) -> metrics.Histogram:
            _, unit, description = METRICS[name]
            return meter.create_histogram(
                name, unit, description, explicit_bucket_boundaries_advisory=buckets
            )

        def counter(name: str) -> metrics.Counter:
            _, unit, description = METRICS[name]
            return meter.create_counter(name, unit, description)

        self._request_duration = histogram("http.client.request.duration", HTTP_DURATION_BUCKETS)
        self._retries = counter("jobwatch.poll.retries")
        _, unit, description = METRICS["jobwatch.wait.active"]
        self._active = meter.create_up_down_counter("jobwatch.wait.active", unit, description)
        self._wait_duration = histogram("jobwatch.wait.duration", WAIT_DURATION_BUCKETS)
        self._detection = histogram("jobwatch.job.detection_delay", DETECTION_DELAY_BUCKETS)
        self._outages = counter("jobwatch.outages")
        self._outage_duration = histogram("jobwatch.outage.duration", WAIT_DURATION_BUCKETS)
        self._paused = histogram("jobwatch.rate_limit.pause.duration", WAIT_DURATION_BUCKETS)
        self._spans: dict[int, trace.Span] = {}
        self._servers: dict[str, _Attributes] = {}

    def __repr__(self) -> str:
        return f"<OpenTelemetryHook spans_open={len(self._spans)}>"

    def _server(self, api_url: str) -> _Attributes:
        """`server.address` and `server.port` of a client's API (cached: one per client)."""
        server = self._servers.get(api_url)
        if server is None:
            parts = urlsplit(api_url)
            port = parts.port or (443 if parts.scheme == "https" else 80)
            server = self._servers[api_url] = {
                "server.address": parts.hostname or "",
                "server.port": port,
            }
        return server

    def polled(self, event: Polled, /) -> None:
        attributes: _Attributes = {
            **self._server(event.api_url),
            "http.request.method": "GET",
            "url.template": "/v3/jobs/{guid}",
        }
        if event.status is not None:
            attributes["http.response.status_code"] = event.status
        error_type = _error_type(event.status, event.error)
        if error_type is not None:
            attributes["error.type"] = error_type
        if event.operation:
            attributes["jobwatch.job.operation"] = event.operation
        self._request_duration.record(event.seconds, attributes)
        if event.detection_delay is not None:
            delay: _Attributes = {}
            if event.operation:
                delay["jobwatch.job.operation"] = event.operation
            self._detection.record(event.detection_delay, delay)

    def retry_scheduled(self, event: RetryScheduled, /) -> None:
        attributes: _Attributes = {"error.type": _error_type(None, event.error) or "_OTHER"}
        if event.operation:
            attributes["jobwatch.job.operation"] = event.operation
        self._retries.add(1, attributes)

    def wait_started(self, event: WaitStarted, /) -> None:
        # Started here, in the caller's task: the caller's current span is the parent.
        attributes: _Attributes = {
            "jobwatch.call": event.call,
            "jobwatch.job.guid": event.guid,
            "server.address": self._server(event.api_url)["server.address"],
        }
        if event.timeout is not None:
            attributes["jobwatch.wait.timeout"] = event.timeout
        self._spans[event.wait_id] = self._tracer.start_span(
            f"jobwatch.{event.call}", attributes=attributes
        )
        self._active.add(1, {"jobwatch.call": event.call})

    def wait_ended(self, event: WaitEnded, /) -> None:
        self._active.add(-1, {"jobwatch.call": event.call})
        outcome = event.outcome
        attributes: _Attributes = {"jobwatch.call": event.call, "jobwatch.wait.outcome": outcome}
        if event.operation:
            attributes["jobwatch.job.operation"] = event.operation
        if event.state is not None:
            attributes["jobwatch.job.state"] = event.state
        error_type = None
        if outcome not in ("ok", "cancelled"):
            error_type = type(event.error).__qualname__
            attributes["error.type"] = error_type
        self._wait_duration.record(event.seconds, attributes)
        span = self._spans.pop(event.wait_id, None)
        if span is None:  # its start was not recorded (the tracer raised)
            return
        span.set_attributes(attributes)
        span.set_attribute("jobwatch.polls", event.polls)
        if error_type is not None:
            span.set_status(trace.Status(trace.StatusCode.ERROR, str(event.error)[:1024]))
        span.end()

    def outage_began(self, event: OutageBegan, /) -> None:
        self._outages.add(1, self._server(event.api_url))

    def outage_ended(self, event: OutageEnded, /) -> None:
        self._outage_duration.record(event.seconds, self._server(event.api_url))

    def rate_limit_paused(self, event: RateLimitPaused, /) -> None:
        self._paused.record(event.seconds, self._server(event.api_url))


def _error_type(status: int | None, error: BaseException | None) -> str | None:
    """`error.type` as the HTTP conventions define it: the status from 400, else the class."""
    if status is not None and status >= 400:
        return str(status)
    if error is not None:
        return type(error).__qualname__
    return None
