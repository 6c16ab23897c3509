"""The learned schedule (`PollPolicy(learn=True)`): per operation, when a job is likely to end.

Pure: no HTTP, no event loop. Every terminal job tells how long it ran,
`updated_at - created_at`, two stamps of the server's clock (whole seconds), so
no clock skew enters. Per `operation` the model keeps, for each bin of age, the
jobs that ended in it and the running time observed in it; their ratio is the
hazard (the chance per second that a job of that age ends now) and its sum
over ages the cumulative hazard H. The next poll goes at the smallest `u` with
`u * (H(age + u) - H(age)) >= 2 * COST` (Keller's rule for checking on a
process: a GET priced at `COST` seconds of delay), clamped to
`[MINIMUM, the state's maximum]` and jittered like the static schedule.

- Ages are in the stamps' frame: seconds since `created_at` as the server's
  clock reads it. A job that ended `D` whole seconds after its `created_at`
  ended somewhere in `[D, D + 1)`: its end is spread uniformly over that
  second, and its running time over the same second weighted by the chance it
  was still running.
- A job still running is counted up to the age it was last seen at (a
  censored observation): a bulk of long jobs seen early teaches that they are
  long, not that the few quick ones are the rule.
- Older jobs fade out: each end weighs `1 / (1 - 1 / MEMORY)` times the one
  before (an effective memory of `MEMORY` jobs), kept as one growing scale so
  an end costs only the bins it touches. When the ends seen stray from those
  the model expected (its hazard over the running time it was told of), the
  durations have shifted: it forgets all but `WARMUP` jobs' worth of its past.
- Until an operation has seen `WARMUP` ends (in effective weight) its jobs
  follow the static `PollPolicy` schedule exactly: the prior is today's
  schedule. At most `OPERATIONS` operations are kept (least recently used out),
  each in a fixed number of bins: memory is bounded.
"""

from __future__ import annotations

import bisect
import math
import random
from collections import OrderedDict

from ._models import JobState
from ._policy import PollPolicy

#: The price of one GET in seconds of detection delay (Keller's `c`).
COST = 1.0
#: The effective number of jobs an operation's model remembers.
MEMORY = 200.0
#: Ends (effective weight) an operation needs before its model replaces the static schedule.
WARMUP = 10.0
#: Jobs (effective weight) a bin of age must have seen running for its hazard to count: beyond
#: what the model has seen, the prior (the static schedule) decides.
SUPPORT = 5.0
#: Shift detection: the ends seen against the ends the model expected (its hazard summed
#: over the running time it was told of, whatever order jobs end in: a bulk's ends come
#: shortest first), over about `DRIFT_JOBS` ends. More than `DRIFT_SIGMAS` standard
#: deviations apart, the durations have shifted: the model keeps only `WARMUP` jobs' worth
#: of its past and learns the new durations within tens of jobs.
DRIFT_JOBS = 20.0
DRIFT_SIGMAS = 4.0
#: The shortest learned interval (seconds).
MINIMUM = 0.5
#: Operations kept at once (least recently used dropped first).
OPERATIONS = 64

#: Bin edges (seconds of age): 0, 0.5, 1, then four bins per doubling up to 2**20 s (12 days).
EDGES: tuple[float, ...] = (0.0, 0.5, *(2.0 ** (k / 4) for k in range(81)))
_BINS = len(EDGES) - 1
_LAST = EDGES[-1]
_GROWTH = 1.0 / (1.0 - 1.0 / MEMORY)
_DRIFT_DECAY = 1.0 - 1.0 / DRIFT_JOBS
_RESCALE = 1e100


class _Model:
    """One operation's ends and running time per age bin, weighted by recency."""

    __slots__ = ("ends", "expected", "exposure", "observed", "rates", "scale", "weight")

    def __init__(self) -> None:
        self.ends = [0.0] * _BINS
        self.exposure = [0.0] * _BINS
        self.rates: list[float] | None = None  # ends / exposure, rebuilt after a change
        self.scale = 1.0  # the weight of the next observation (grows: the old fade)
        self.weight = 0.0  # the sum of the ends' weights, in the same units
        self.observed = 0.0  # recent ends (decayed per end)
        self.expected = 0.0  # the ends the model expected over the same time

    @property
    def jobs(self) -> float:
        """The effective number of ends remembered."""
        return self.weight / self.scale

    def run(self, start: float, stop: float) -> None:
        """Count running time from age `start` to `stop` at the current weight."""
        stop = min(stop, _LAST)
        if stop <= start:
            return
        scale, exposure, ends = self.scale, self.exposure, self.ends
        rates = self.rates or self._rates()
        thin = SUPPORT * scale
        expected = 0.0
        i = bisect.bisect_right(EDGES, start) - 1
        while i < _BINS and EDGES[i] < stop:
            lo, hi = max(start, EDGES[i]), min(stop, EDGES[i + 1])
            r = rates[i]
            if r > 0:
                expected += r * (hi - lo)
            x = exposure[i] = exposure[i] + (hi - lo) * scale
            # Kept up to date in place: a poll does not rebuild every bin's rate.
            rates[i] = ends[i] / x if x >= thin * (EDGES[i + 1] - EDGES[i]) else -1.0
            i += 1
        self.expected += expected

    def forget(self, keep: float) -> None:
        """Keep only `keep` jobs' worth of the past (when there is more)."""
        factor = keep / self.jobs
        if factor < 1:
            self.ends = [v * factor for v in self.ends]
            self.exposure = [v * factor for v in self.exposure]
            self.weight *= factor
            self.rates = None

    def end(self, at: float, width: float) -> None:
        """One end, uniform over `[at, at + width)` (a point when `width` is 0)."""
        at = min(max(at, 0.0), _LAST - max(width, 1e-9))
        scale = self.scale
        rates = self.rates or self._rates()
        expected = 0.0
        if width <= 0:
            self.ends[bisect.bisect_right(EDGES, at) - 1] += scale
        else:
            stop = at + width
            i = bisect.bisect_right(EDGES, at) - 1
            while i < _BINS and EDGES[i] < stop:
                lo, hi = max(at, EDGES[i]), min(stop, EDGES[i + 1])
                self.ends[i] += scale * (hi - lo) / width
                # Expected running time in [lo, hi): the job was still running with
                # a chance falling linearly from 1 at `at` to 0 at `stop`.
                running = (hi - lo) * (stop - (lo + hi) / 2) / width
                self.exposure[i] += scale * running
                if rates[i] > 0:
                    expected += rates[i] * running
                i += 1
        self.weight += scale
        self.scale *= _GROWTH
        if self.scale > _RESCALE:  # keep the numbers finite; only ratios matter
            factor = 1.0 / self.scale
            self.ends = [v * factor for v in self.ends]
            self.exposure = [v * factor for v in self.exposure]
            self.weight *= factor
            self.scale = 1.0
        self.rates = None
        self._check(expected)

    def _check(self, expected: float) -> None:
        """Ends observed against ends the model expected: a shift makes the model forget."""
        self.observed += 1.0
        self.expected += expected
        if self.weight >= WARMUP * self.scale:
            excess = self.observed - self.expected
            if abs(excess) > DRIFT_SIGMAS * math.sqrt(self.expected + 1.0):
                self.forget(WARMUP)
                self.observed = self.expected = 0.0
        self.observed *= _DRIFT_DECAY
        self.expected *= _DRIFT_DECAY

    def _rates(self) -> list[float]:
        # A bin seen running by fewer than SUPPORT jobs gets -1: unknown, not "no end".
        thin = SUPPORT * self.scale
        rates = self.rates = [
            e / x if x >= thin * (hi - lo) else -1.0
            for e, x, lo, hi in zip(self.ends, self.exposure, EDGES, EDGES[1:], strict=False)
        ]
        return rates

    def wait(self, age: float, target: float, cap: float) -> tuple[float, bool]:
        """The smallest `u <= cap` with `u * (H(age + u) - H(age)) >= target` (else `cap`).

        Returns it and True, or (where the data end, False) when the walk meets a
        bin the model knows too little about before the rule is met.
        """
        rates = self.rates or self._rates()
        i = bisect.bisect_right(EDGES, age) - 1
        u0 = 0.0  # the wait so far, up to the start of bin i's remaining segment
        dh = 0.0  # H(age + u0) - H(age)
        while i < _BINS and u0 < cap:
            r = rates[i]
            if r < 0:
                return u0, False
            length = EDGES[i + 1] - max(age, EDGES[i])
            # Within the segment, f(s) = (u0 + s) * (dh + r * s): solve f(s) = target.
            if r > 0:
                b = r * u0 + dh
                c = u0 * dh - target
                s = (-b + math.sqrt(b * b - 4 * r * c)) / (2 * r)
            elif dh > 0:
                s = target / dh - u0
            else:
                s = math.inf
            if s <= length:
                return min(u0 + s, cap), True
            u0 += length
            dh += r * length
            i += 1
        return min(u0, cap), i < _BINS


class LearnedSchedule:
    """The learned poll schedule of one client: a model per operation, the policy as prior.

    Args:
        policy: the static schedule used until an operation has data, and whose
            maximums and jitter bound the learned intervals.
    """

    __slots__ = ("_models", "policy")

    def __init__(self, policy: PollPolicy) -> None:
        self.policy = policy
        self._models: OrderedDict[str, _Model] = OrderedDict()

    def __repr__(self) -> str:
        known = ", ".join(f"{op}={m.jobs:.0f}" for op, m in self._models.items())
        return f"<LearnedSchedule {known or 'empty'}>"

    def __len__(self) -> int:
        return len(self._models)

    def _model(self, operation: str) -> _Model:
        models = self._models
        model = models.get(operation)
        if model is None:
            model = models[operation] = _Model()
            if len(models) > OPERATIONS:
                models.popitem(last=False)
        else:
            models.move_to_end(operation)
        return model

    def jobs(self, operation: str) -> float:
        """The effective number of ended jobs remembered for `operation` (0 when unknown)."""
        model = self._models.get(operation)
        return 0.0 if model is None else model.jobs

    def observe_running(self, operation: str, age: float, seen: float = 0.0) -> None:
        """A job of `operation` was still running at `age` (last counted up to `seen`)."""
        self._model(operation).run(max(seen, 0.0), age)

    def observe_end(
        self, operation: str, created_at: float, updated_at: float, seen: float = 0.0
    ) -> None:
        """A job of `operation` ended at `updated_at` (epoch seconds, server stamps).

        `seen` is the age up to which its running time was already counted.
        Whole-second stamps spread the end over the second they allow.
        """
        duration = updated_at - created_at
        if not duration >= 0 or math.isinf(duration):
            return  # stamps out of order (or missing): nothing to learn
        whole = created_at == int(created_at) and updated_at == int(updated_at)
        width = 1.0 if whole else 0.0
        seen = max(seen, 0.0)
        if seen > duration:  # seen running within the end's second: it ended after that
            width = max(duration + width - seen, 0.0)
            duration = seen
        model = self._model(operation)
        model.run(seen, duration)
        model.end(duration, width)

    def next_interval(
        self, operation: str, state: str, age: float, step: int, rng: random.Random
    ) -> float:
        """Seconds until the next poll of a job of `operation`, `age` seconds old, in `state`.

        `step` counts the polls since the job entered `state`: the static
        schedule's own argument, used while the operation has too few ends.
        """
        policy = self.policy
        model = self._models.get(operation)
        if model is None or model.weight < WARMUP * model.scale:
            return policy.interval(state, step, rng)
        cap = policy.polling_maximum if state == JobState.POLLING else policy.maximum
        value, known = model.wait(max(age, 0.0), 2 * COST, cap)
        if not known:  # beyond the data the prior decides; the data may only postpone it
            return max(value, policy.interval(state, step, rng))
        value = max(value, min(MINIMUM, cap))
        if not policy.jitter:
            return value
        return value * rng.uniform(1 - policy.jitter, 1 + policy.jitter)
