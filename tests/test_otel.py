"""`jobwatch.otel` with the OpenTelemetry SDK's in-memory exporters: spans and metrics."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import StatusCode

import jobwatch
from jobwatch.otel import METRICS, OpenTelemetryHook
from jobwatch.testing import FakeCloudController, FakeResponse, Outage, set_testing

from .helpers import fast_client


class Telemetry:
    """An SDK tracer and meter provider that keep everything in memory."""

    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])
        self.hook = OpenTelemetryHook(
            tracer_provider=self.tracer_provider, meter_provider=self.meter_provider
        )

    def finished(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    def points(self, name: str) -> list[Any]:
        """The data points of one instrument (empty when it recorded nothing)."""
        data = self.reader.get_metrics_data()
        found = []
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        found.extend(metric.data.data_points)
        return found

    def close(self) -> None:
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    telemetry = Telemetry()
    yield telemetry
    telemetry.close()


async def test_a_bulk_wait_with_a_failure_a_retry_and_an_outage(
    cc: FakeCloudController, telemetry: Telemetry
) -> None:
    """A span per job, and the request, retry, wait, detection and outage metrics."""
    ok = cc.add_jobs(3, timeline=((0.0, "PROCESSING"), (0.5, "COMPLETE")), operation="app.delete")
    failed = cc.add_job(states=("PROCESSING", "FAILED"), operation="service_instance.create")
    flaky = cc.add_job(states=("PROCESSING", "COMPLETE"), operation="app.delete")
    cc.inject(flaky, FakeResponse.router_502())
    async with fast_client(cc, hooks=[telemetry.hook]) as cf:
        cc.schedule_outage(Outage.ROUTER_503, 0.3, start=0.05)
        outcomes = await cf.wait_for_jobs([*ok, failed, flaky], timeout=10)
        stats = cf.stats
    assert [o.ok for o in outcomes.values()] == [True, True, True, False, True]

    spans = {span.attributes["jobwatch.job.guid"]: span for span in telemetry.finished()}  # type: ignore[index]
    assert set(spans) == set(outcomes)
    for guid, span in spans.items():
        assert span.name == "jobwatch.wait_for_jobs"
        assert span.attributes is not None
        assert span.attributes["jobwatch.call"] == "wait_for_jobs"
        assert span.attributes["server.address"] == "127.0.0.1"
        assert span.attributes["jobwatch.polls"] >= 1  # type: ignore[operator]
        if guid == failed:
            assert span.status.status_code is StatusCode.ERROR
            assert span.attributes["error.type"] == "JobFailed"
            assert span.attributes["jobwatch.job.state"] == "FAILED"
            assert span.attributes["jobwatch.wait.outcome"] == "failed"
            assert span.attributes["jobwatch.job.operation"] == "service_instance.create"
        else:
            assert span.status.status_code is StatusCode.UNSET
            assert "error.type" not in span.attributes
            assert span.attributes["jobwatch.job.state"] == "COMPLETE"
            assert span.attributes["jobwatch.job.operation"] == "app.delete"
    assert spans[flaky].attributes["jobwatch.polls"] >= 3  # type: ignore[index,operator]

    requests = telemetry.points("http.client.request.duration")
    by_status: dict[object, int] = {}
    for point in requests:
        attributes = point.attributes
        assert attributes["http.request.method"] == "GET"
        assert attributes["server.address"] == "127.0.0.1"
        assert attributes["server.port"] == int(cc.url.rsplit(":", 1)[1])
        by_status[attributes.get("http.response.status_code")] = (
            by_status.get(attributes.get("http.response.status_code"), 0) + point.count
        )
        if attributes.get("http.response.status_code", 200) >= 400:
            assert attributes["error.type"] == str(attributes["http.response.status_code"])
    assert sum(by_status.values()) == stats.requests
    assert by_status[200] == stats.by_status[200]
    assert by_status[502] == stats.by_status[502] >= 1
    assert by_status[503] == stats.by_status[503] >= 1

    retries = telemetry.points("jobwatch.poll.retries")
    assert sum(point.value for point in retries) == stats.retries >= 2
    assert {point.attributes["error.type"] for point in retries} >= {"BadGateway"}

    (active,) = telemetry.points("jobwatch.wait.active")
    assert active.value == 0
    waits = telemetry.points("jobwatch.wait.duration")
    assert sum(point.count for point in waits) == 5
    failures = [p for p in waits if p.attributes.get("jobwatch.wait.outcome") == "failed"]
    assert [p.count for p in failures] == [1]

    # Every job was seen running before it ended: each has a detection delay.
    delays = telemetry.points("jobwatch.job.detection_delay")
    assert sum(point.count for point in delays) == 5
    assert all(point.min >= 0 and point.max < 3 for point in delays)

    (outages,) = telemetry.points("jobwatch.outages")
    assert outages.value == stats.outages == 1
    (outage,) = telemetry.points("jobwatch.outage.duration")
    assert outage.count == 1
    assert outage.sum == pytest.approx(stats.outage_seconds)
    assert telemetry.points("jobwatch.rate_limit.pause.duration") == []


async def test_the_wait_span_is_a_child_of_the_callers_span(
    cc: FakeCloudController, telemetry: Telemetry
) -> None:
    """Started in the caller's task, the wait's span nests under the caller's current span."""
    guid = cc.add_job(states=("PROCESSING", "COMPLETE"))
    tracer = telemetry.tracer_provider.get_tracer("test")
    async with fast_client(cc, hooks=[telemetry.hook]) as cf:
        with tracer.start_as_current_span("delete app") as parent:
            await cf.wait_for_job(guid, timeout=5)
    (wait,) = [s for s in telemetry.finished() if s.name == "jobwatch.wait_for_job"]
    assert wait.parent is not None
    assert wait.parent.span_id == parent.get_span_context().span_id
    assert wait.attributes is not None
    assert wait.attributes["jobwatch.wait.timeout"] == 5


async def test_a_timeout_is_an_error_span_and_a_rate_limit_pause_a_metric(
    cc: FakeCloudController, telemetry: Telemetry
) -> None:
    """A wait that times out ends its span in error; a 429's pause is recorded in seconds."""
    slow = cc.add_job(states=("PROCESSING",))
    limited = cc.add_job(states=("COMPLETE",))
    cc.inject(limited, FakeResponse.rate_limited(retry_after=7))
    async with fast_client(cc, hooks=[telemetry.hook]) as cf:
        with pytest.raises(jobwatch.JobTimeout):
            await cf.wait_for_job(slow, timeout=0.1)
        with set_testing():  # the 429's pause is counted, not slept through
            await cf.wait_for_job(limited, timeout=5)
    (span,) = [
        s
        for s in telemetry.finished()
        if s.attributes and s.attributes["jobwatch.job.guid"] == slow
    ]
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes is not None
    assert span.attributes["error.type"] == "JobTimeout"
    assert span.attributes["jobwatch.wait.outcome"] == "timeout"
    assert span.attributes["jobwatch.job.state"] == "PROCESSING"
    (pause,) = telemetry.points("jobwatch.rate_limit.pause.duration")
    assert pause.count == 1
    assert 6 <= pause.sum <= 8
    limited_requests = [
        p
        for p in telemetry.points("http.client.request.duration")
        if p.attributes.get("http.response.status_code") == 429
    ]
    assert [p.count for p in limited_requests] == [1]


def test_the_instruments_are_documented() -> None:
    """Every instrument name is the conventions' or under `jobwatch.`."""
    assert "http.client.request.duration" in METRICS
    assert all(name.startswith("jobwatch.") for name in METRICS if not name.startswith("http."))
    assert trace.get_tracer_provider() is not None
