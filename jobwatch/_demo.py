"""The `jobwatch demo` scenario: a realistic mix of jobs for the embedded fake Cloud Controller."""

from __future__ import annotations

import bisect
import random
import statistics
from collections.abc import Iterable, Iterator, Mapping, Sequence

import attrs

from jobwatch import PollPolicy, RetryPolicy
from jobwatch._models import TERMINAL_STATES
from jobwatch.testing import FakeCloudController, Fault, RateLimit

#: The token the demo's fake controller accepts (it never leaves loopback).
DEMO_TOKEN = "demo-token"
#: Share of the jobs that end FAILED.
FAILED_SHARE = 0.05
#: The fake's per-token rate limit at speed 1: felt, so the client has to pace itself.
RATE_LIMIT = RateLimit(limit=3500, window=5.0)
#: Random faults per job GET: the router's 502 and nginx's maintenance 503, which
#: jobwatch must retry without a word to the user.
FAULTS: Mapping[Fault, float] = {Fault.ROUTER_502: 0.02, Fault.MAINTENANCE_503: 0.01}
#: Seconds each GET takes at the fake, like a controller on a nearby network.
LATENCY = 0.02
#: Seconds a demo wait may take before the jobs still going count as timed out.
TIMEOUT = 60.0

# Errors as real controllers and brokers report them on FAILED jobs.
_BINDING_IN_PROGRESS = {
    "code": 10009,
    "title": "CF-UnableToPerform",
    "detail": "delete could not be completed: An operation for the service binding between "
    "app orders-worker and service instance orders-db is in progress.",
}
_MANIFEST_ROUTE = {
    "code": 10008,
    "title": "CF-UnprocessableEntity",
    "detail": "For application 'web': Routes cannot be mapped to destinations in different spaces",
}
_BROKER_ERRORS = (
    {
        "code": 10009,
        "title": "CF-UnableToPerform",
        "detail": "provision could not be completed: Service broker error: instance limit "
        "for this service plan has been reached",
    },
    {
        "code": 10001,
        "title": "CF-ServiceBrokerBadResponse",
        "detail": "The service broker returned an invalid response: expected valid JSON "
        "object in body, broker returned 'upstream connect error'",
    },
    {
        "code": 10009,
        "title": "CF-UnableToPerform",
        "detail": "provision could not be completed: Service broker error: The plan "
        "'db-large' is not available in region eu-west-2",
    },
)
_BIND_TIMEOUT = {
    "code": 10001,
    "title": "CF-HttpClientTimeout",
    "detail": "The request to the service broker timed out: "
    "https://broker.example.org/v2/service_instances/7f1e/service_bindings/c2a9",
}
_DEPRECATED_PLAN = "The service plan 'db-small' is deprecated and will be removed on 2026-01-31"


@attrs.frozen
class JobPlan:
    """What one demo job does on the fake controller."""

    operation: str
    resource: str
    timeline: tuple[tuple[float, str], ...]
    errors: tuple[Mapping[str, object], ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def ends_after(self) -> float:
        """Seconds from the job's first GET to its terminal state."""
        return self.timeline[-1][0]

    def scaled(self, speed: float) -> JobPlan:
        """The same job, `speed` times faster."""
        timeline = tuple((offset / speed, state) for offset, state in self.timeline)
        return attrs.evolve(self, timeline=timeline)

    def state_at(self, seconds: float) -> str:
        """The state the fake serves `seconds` after the first GET."""
        offsets = [offset for offset, _ in self.timeline]
        return self.timeline[max(bisect.bisect_right(offsets, seconds) - 1, 0)][1]


def plan_jobs(n: int, rng: random.Random) -> list[JobPlan]:
    """A realistic mix: quick app deletes, manifests, and slow broker work in POLLING."""
    plans = []
    for _ in range(n):
        kind = rng.random()
        failed = rng.random() < FAILED_SHARE
        end = "FAILED" if failed else "COMPLETE"
        if kind < 0.55:
            done = rng.uniform(0.2, 3.0)
            plans.append(
                JobPlan(
                    "app.delete",
                    "app",
                    ((0.0, "PROCESSING"), (done, end)),
                    (_BINDING_IN_PROGRESS,) if failed else (),
                )
            )
        elif kind < 0.65:
            done = rng.uniform(1.0, 4.0)
            plans.append(
                JobPlan(
                    "space.apply_manifest",
                    "space",
                    ((0.0, "PROCESSING"), (done, end)),
                    (_MANIFEST_ROUTE,) if failed else (),
                )
            )
        elif kind < 0.90:
            polling = rng.uniform(0.2, 1.0)
            done = polling + rng.uniform(2.0, 6.0)
            deprecated = rng.random() < 0.05
            plans.append(
                JobPlan(
                    "service_instance.create",
                    "service_instances",
                    ((0.0, "PROCESSING"), (polling, "POLLING"), (done, end)),
                    (rng.choice(_BROKER_ERRORS),) if failed else (),
                    (_DEPRECATED_PLAN,) if deprecated else (),
                )
            )
        else:
            polling = rng.uniform(0.2, 0.8)
            done = polling + rng.uniform(1.0, 4.0)
            plans.append(
                JobPlan(
                    "service_bindings.create",
                    "service_credential_binding",
                    ((0.0, "PROCESSING"), (polling, "POLLING"), (done, end)),
                    (_BIND_TIMEOUT,) if failed else (),
                )
            )
    return plans


def add_jobs(cc: FakeCloudController, plans: Iterable[JobPlan]) -> list[str]:
    """Script every planned job on the fake; return their guids in plan order."""
    return [
        cc.add_job(
            operation=plan.operation,
            resource=plan.resource,
            timeline=plan.timeline,
            errors=[dict(error) for error in plan.errors],
            warnings=plan.warnings,
        )
        for plan in plans
    ]


def detection_time(plan: JobPlan, policy: PollPolicy, rng: random.Random) -> tuple[float, int]:
    """When `policy` sees the job end (seconds after its first GET), and with how many GETs.

    The poller's schedule replayed without a network: no faults, no rate limit.
    """
    now, requests, seen = 0.0, 0, ""
    delays: Iterator[float] = iter(())
    while True:
        requests += 1
        state = plan.state_at(now)
        if state in TERMINAL_STATES:
            return now, requests
        if state != seen:
            seen, delays = state, policy.delays(state, rng)
        now += next(delays)


def p50_p95(values: Sequence[float]) -> tuple[float, float]:
    """The median and 95th percentile, linear between closest ranks (as the benchmarks)."""
    if len(values) < 2:
        only = values[0] if values else 0.0
        return only, only
    cuts = statistics.quantiles(values, n=20, method="inclusive")
    return statistics.median(values), cuts[18]


@attrs.frozen
class Scenario:
    """The demo: how many jobs, the seed of their mix, and how much faster than life.

    `speed` divides every duration alike (the jobs' timelines, the poll and
    retry intervals, the rate-limit window), so the run keeps its shape, only
    shorter.
    """

    jobs: int = 2000
    seed: int = 0
    speed: float = 1.0

    def plans(self) -> list[JobPlan]:
        """The jobs to script, the same for the same seed."""
        plans = plan_jobs(self.jobs, random.Random(self.seed))
        return plans if self.speed == 1 else [plan.scaled(self.speed) for plan in plans]

    def poll_policy(self) -> PollPolicy:
        """The default `PollPolicy`, scaled by `speed`."""
        default = PollPolicy()
        if self.speed == 1:
            return default
        return attrs.evolve(
            default,
            initial=default.initial / self.speed,
            maximum=default.maximum / self.speed,
            polling_initial=default.polling_initial / self.speed,
            polling_maximum=default.polling_maximum / self.speed,
        )

    def retry_policy(self) -> RetryPolicy:
        """The default `RetryPolicy`, scaled by `speed`."""
        default = RetryPolicy()
        if self.speed == 1:
            return default
        return attrs.evolve(
            default, initial=default.initial / self.speed, maximum=default.maximum / self.speed
        )

    def rate_limit(self) -> RateLimit:
        """`RATE_LIMIT`, its window scaled by `speed`."""
        return RateLimit(RATE_LIMIT.limit, RATE_LIMIT.window / self.speed)

    def controller(self) -> FakeCloudController:
        """The demo's fake controller: rate limit, faults and latency; requests not recorded."""
        return FakeCloudController(
            token=DEMO_TOKEN,
            rate_limit=self.rate_limit(),
            faults=FAULTS,
            seed=self.seed,
            latency=LATENCY,
            record_requests=False,
        )

    def expected_seconds(self, plans: Sequence[JobPlan]) -> float:
        """About how long the run takes: the schedule replayed, plus the first GETs."""
        rng = random.Random(self.seed)
        policy = self.poll_policy()
        latest = max((detection_time(plan, policy, rng)[0] for plan in plans), default=0.0)
        # The first GETs go out 32 at a time, each taking LATENCY plus the CPU of
        # both ends; pacing under the rate limit then skips polls rather than
        # delaying the last ones. Measured: 12.6-13.3 s for 2000 jobs, 2 cores.
        return latest + len(plans) / 4000
