"""The learned schedule (`PollPolicy(learn=True)`): its prior, what it learns, its bounds."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

import jobwatch
from jobwatch import JobState, PollPolicy
from jobwatch._learn import EDGES, OPERATIONS, WARMUP, LearnedSchedule
from jobwatch._models import Job
from jobwatch._poller import JobPoll
from jobwatch.testing import FakeCloudController

BASE = 1_700_000_000  # a whole second of server time
STATIC = PollPolicy(learn=True, jitter=0)


def teach(learned: LearnedSchedule, op: str, duration: float, n: int, seed: int = 1) -> None:
    """`n` jobs of `operation` lasting `duration`, polled every second as a client would."""
    phases = random.Random(seed)
    for _ in range(n):
        phase = phases.random()  # where in its second the job was created
        seen, t = 0.0, 0.0
        while t < duration:
            learned.observe_running(op, t + phase, seen)
            seen, t = t + phase, t + 1.0
        learned.observe_end(op, BASE, BASE + int(phase + duration), seen)


def first(learned: LearnedSchedule, op: str = "op", age: float = 0.0) -> float:
    return learned.next_interval(op, "PROCESSING", age, 0, random.Random(0))


def test_learning_is_off_by_default_and_must_be_a_bool() -> None:
    """`PollPolicy()` does not learn; `learn` takes a bool only."""
    assert PollPolicy().learn is False
    with pytest.raises(TypeError):
        PollPolicy(learn="yes")  # type: ignore[arg-type]


@pytest.mark.parametrize("state", ["PROCESSING", "POLLING", "SOMETHING_NEW"])
def test_prior_is_the_static_schedule_exactly(state: str) -> None:
    """Without data (or with data only for other operations) the intervals are the policy's."""
    policy = PollPolicy(learn=True)
    learned = LearnedSchedule(policy)
    teach(learned, "other.op", 1.0, 50)
    teach(learned, "op", 1.0, int(WARMUP) - 1)  # not yet enough
    a, b = random.Random(7), random.Random(7)
    for step in range(30):
        age = step * 1.7
        for op in ("op", "unknown.op"):
            assert learned.next_interval(op, state, age, step, a) == policy.interval(
                state, step, b
            )


def test_a_tight_distribution_shortens_the_first_interval() -> None:
    """Jobs that all end within their second second: the first poll goes well before 2.5 s."""
    learned = LearnedSchedule(STATIC)
    assert first(learned) == STATIC.initial
    teach(learned, "op", 1.0, 100)
    assert 0.5 <= first(learned) < 2.0
    assert learned.jobs("op") == pytest.approx(78.5, abs=1)  # 100 jobs, fading (memory 200)


def test_long_jobs_are_polled_late_and_never_past_the_cap() -> None:
    """Jobs of 9 s: the first poll waits most of it; every interval stays within bounds."""
    learned = LearnedSchedule(STATIC)
    teach(learned, "op", 9.0, 300)
    assert first(learned) > 6.0
    for age in [x / 4 for x in range(200)]:
        for state, cap in (("PROCESSING", STATIC.maximum), ("POLLING", STATIC.polling_maximum)):
            assert 0.5 <= learned.next_interval("op", state, age, 3, random.Random(0)) <= cap


def test_ages_beyond_the_data_fall_back_to_the_static_schedule() -> None:
    """A job older than any seen: the prior decides (here its step-5 interval)."""
    learned = LearnedSchedule(STATIC)
    teach(learned, "op", 2.0, 100)
    assert learned.next_interval("op", "PROCESSING", 30.0, 5, random.Random(0)) == (
        STATIC.interval("PROCESSING", 5)
    )


@pytest.mark.parametrize(("before", "after"), [(10.0, 2.0), (2.0, 10.0)])
def test_a_5x_shift_is_learned_within_50_jobs(before: float, after: float) -> None:
    """600 jobs of one duration, then 50 of a duration 5x off: the model follows."""
    learned = LearnedSchedule(STATIC)
    teach(learned, "op", before, 600)
    old = first(learned)
    teach(learned, "op", after, 50, seed=2)
    new = first(learned)
    fresh = LearnedSchedule(STATIC)
    teach(fresh, "op", after, 600, seed=3)
    # Closer to what a model of the new durations alone says than to the old answer.
    assert abs(new - first(fresh)) < abs(new - old) / 2


def test_memory_is_bounded_per_operation_and_in_operations() -> None:
    """At most OPERATIONS models (least recently used dropped), each a fixed set of bins."""
    learned = LearnedSchedule(STATIC)
    for i in range(OPERATIONS * 3):
        learned.observe_end(f"op{i}", BASE, BASE + 3)
        learned.observe_end("kept", BASE, BASE + 3)  # used all along: never dropped
    assert len(learned) == OPERATIONS
    assert learned.jobs("kept") > 0
    assert learned.jobs("op0") == 0
    learned.observe_end("kept", BASE, BASE + 10**9)  # absurd durations land in the last bin
    model = learned._models["kept"]
    assert len(model.ends) == len(model.exposure) == len(EDGES) - 1
    assert "kept=" in repr(learned)
    assert repr(LearnedSchedule(STATIC)) == "<LearnedSchedule empty>"


def test_fading_weights_are_rescaled_without_changing_a_decision() -> None:
    """The growing weight of new ends is rescaled before it overflows; ratios stay put."""
    learned = LearnedSchedule(STATIC)
    teach(learned, "op", 3.0, 100)
    model = learned._models["op"]
    before = first(learned)
    model.scale *= 1e100
    model.ends = [v * 1e100 for v in model.ends]
    model.exposure = [v * 1e100 for v in model.exposure]
    model.weight *= 1e100
    learned.observe_end("op", BASE, BASE + 3)  # triggers the rescale
    assert model.scale == 1.0
    assert first(learned) == pytest.approx(before, rel=0.05)


def test_stamps_out_of_order_teach_nothing_and_fractions_count_as_points() -> None:
    """updated_at before created_at is ignored; sub-second stamps put the end at a point."""
    learned = LearnedSchedule(STATIC)
    learned.observe_end("op", BASE + 5, BASE)
    assert learned.jobs("op") == 0
    for _ in range(20):
        learned.observe_end("op", BASE + 0.25, BASE + 3.5)
    assert 3.0 < first(learned) <= 3.25  # at the point, not spread over the second after it


def _job(state: JobState, created: int, updated: int, operation: str = "app.delete") -> Job:
    return Job(
        guid="g",
        state=state,
        operation=operation,
        created_at=datetime.fromtimestamp(created, UTC),
        updated_at=datetime.fromtimestamp(updated, UTC),
    )


class _Wait:
    deadline = float("inf")
    until_terminal = True

    def update(self, job: Job) -> None:
        pass

    def finish(self, job: Job | None, error: BaseException | None) -> None:
        pass


def test_job_poll_feeds_the_model_its_age_from_the_server_clock() -> None:
    """`JobPoll.succeeded` counts the job running up to its age, then learns its stamps."""
    learned = LearnedSchedule(STATIC)
    poll = JobPoll("g")
    poll.add(_Wait())
    rng = random.Random(0)
    running = _job(JobState.PROCESSING, BASE, BASE)
    at = poll.succeeded(running, 100.0, STATIC, rng, learned, BASE + 1.5)
    assert at == 100.0 + STATIC.initial  # no data yet: the static schedule
    assert poll.age == 1.5
    poll.succeeded(_job(JobState.COMPLETE, BASE, BASE + 3), 102.5, STATIC, rng, learned, BASE + 4)
    assert learned.jobs("app.delete") == pytest.approx(1, rel=0.01)


async def test_a_learning_client_waits_and_learns(
    fake_cloud_controller: FakeCloudController,
) -> None:
    """`PollPolicy(learn=True)` end to end over HTTP: the waits work, the model fills."""
    guids = fake_cloud_controller.add_jobs(3, states=("PROCESSING", "PROCESSING", "COMPLETE"))
    async with fake_cloud_controller.client(
        poll=jobwatch.PollPolicy(learn=True, initial=0.01, maximum=0.05)
    ) as cf:
        outcomes = await cf.wait_for_jobs(guids, timeout=10)
        learned = cf._scheduler.learned
    assert all(outcome.ok for outcome in outcomes.values())
    assert learned is not None
    assert learned.jobs("app.delete") == pytest.approx(3, abs=0.1)


def test_a_bulk_ending_shortest_first_is_not_taken_for_a_shift() -> None:
    """Jobs waited on together end in order of duration: the model does not forget for that."""
    rng = random.Random(4)
    learned = LearnedSchedule(STATIC)
    for _ in range(300):
        teach(learned, "op", rng.lognormvariate(1.1, 0.6), 1, seed=rng.randrange(1000))
    remembered = learned.jobs("op")
    jobs = [(rng.random(), rng.lognormvariate(1.1, 0.6)) for _ in range(200)]
    seen = [0.0] * len(jobs)
    running = set(range(len(jobs)))
    t = 0.0
    while running:
        for i in sorted(running, key=lambda i: jobs[i][1]):
            phase, duration = jobs[i]
            if duration <= t:
                learned.observe_end("op", BASE, BASE + int(phase + duration), seen[i])
                running.discard(i)
            else:
                learned.observe_running("op", t + phase, seen[i])
                seen[i] = t + phase
        t += 0.5
    assert learned.jobs("op") > remembered  # nothing forgotten: the ends were as expected


def test_jobs_far_longer_than_the_cap_wait_the_cap_jittered() -> None:
    """Jobs of a minute while PROCESSING: each interval is the 10 s cap, jittered by 10 %."""
    policy = PollPolicy(learn=True)
    learned = LearnedSchedule(policy)
    teach(learned, "op", 60.0, 30)
    assert 9.0 <= first(learned) <= 11.0
    ancient = learned.next_interval("op", "PROCESSING", 2.0**21, 0, random.Random(0))
    assert ancient == policy.interval("PROCESSING", 0, random.Random(0))  # past every bin
