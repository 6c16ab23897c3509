"""The run: signals, the client, and the `wait` and `get` commands."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TextIO

import jobwatch
from jobwatch import Client, ConfigError, Outcome
from jobwatch._refs import ApiBase

from ._display import Display, Output
from ._report import (
    COMPLETE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_TERMINATED,
    Tally,
    _ended_words,
    _plural,
    _traffic,
    classify,
    exit_code,
    job_table,
    problem_line,
    unavailable,
)

#: The only way to hand the command a token: a flag would show in `ps`.
TOKEN_ENV = "JOBWATCH_TOKEN"

#: The signals that stop a run, and how its summary names each.
_STOPPED_BY = {signal.SIGINT: "interrupted", signal.SIGTERM: "terminated (SIGTERM)"}


class Interrupt:
    """Turns the first Ctrl-C or SIGTERM into the cancellation of the current run.

    Service managers (systemd, Kubernetes, a CI timeout) stop a command with
    SIGTERM: it gets the same clean stop and summary as Ctrl-C, and exit 143.
    """

    def __init__(self) -> None:
        self.requested = False
        #: The signal that stopped the run, once one has.
        self.signal: signal.Signals | None = None
        self._task: asyncio.Task[Any] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def exit_code(self) -> int:
        """128 + the signal's number, as a shell reports a command killed by it."""
        return EXIT_TERMINATED if self.signal == signal.SIGTERM else EXIT_INTERRUPTED

    @property
    def word(self) -> str:
        """How the summary says the run was stopped."""
        return _STOPPED_BY[self.signal or signal.SIGINT]

    def install(self) -> None:
        """Catch SIGINT and SIGTERM on the running loop (where the platform lets us)."""
        loop = asyncio.get_running_loop()
        for signum in _STOPPED_BY:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(signum, self._fire, signum)
                self._loop = loop

    def uninstall(self) -> None:
        """Give SIGINT and SIGTERM back to their default handlers."""
        if self._loop is not None:
            for signum in _STOPPED_BY:
                with contextlib.suppress(RuntimeError, ValueError):
                    self._loop.remove_signal_handler(signum)
            self._loop = None

    def _fire(self, signum: signal.Signals) -> None:
        self.requested = True
        self.signal = signum
        # A second Ctrl-C raises KeyboardInterrupt, a second SIGTERM kills: a way out
        # if cleanup hangs.
        self.uninstall()
        if self._task is not None:
            self._task.cancel()

    async def run(self, work: Awaitable[None]) -> bool:
        """Await `work`; True when a signal stopped it."""
        task = asyncio.ensure_future(work)
        self._task = task
        try:
            if self.requested:
                task.cancel()
            await task
        except asyncio.CancelledError:
            if not self.requested:
                raise
        finally:
            self._task = None
        return self.requested


async def _ticker(display: Display) -> None:
    while True:
        await asyncio.sleep(display.period)
        display.refresh()


class Run:
    """One wait on many jobs, with its tally, display and outputs."""

    def __init__(self, cf: Client, output: Output, interrupt: Interrupt, title: str) -> None:
        self.cf = cf
        self.output = output
        self.interrupt = interrupt
        self.title = title
        self.loop = asyncio.get_running_loop()
        self.tally = Tally(0, self.loop.time())
        self.interrupted = False
        self.seconds = 0.0

    async def wait(
        self,
        refs: Sequence[str],
        *,
        timeout: float | None,
        on_outcome: Callable[[Outcome, float], None] | None = None,
    ) -> None:
        """Wait on every job, reporting each as it ends.

        Raises:
            InvalidJobReference: a bad guid or foreign URL, before any request.
        """
        tally, output, loop = self.tally, self.output, self.loop
        stream = self.cf.as_completed(refs, timeout=timeout, on_update=tally.update)
        # Counted with the client's own parsing of references (a guid and its URL are
        # one job); `as_completed` has just refused any bad one.
        api = ApiBase.parse(self.cf.api_url, allow_insecure_http=True)
        tally.total = len(dict.fromkeys(api.resolve(ref)[0] for ref in refs))
        tally.started = loop.time()

        async def consume() -> None:
            try:
                async for outcome in stream:
                    now = loop.time()
                    tally.finish(outcome)
                    output.record(outcome, now - tally.started)
                    if on_outcome is not None:
                        on_outcome(outcome, now)
            finally:
                # Closing the stream leaves the poll loops of the jobs still going.
                aclose = getattr(stream, "aclose", None)
                if aclose is not None:
                    await aclose()

        display = output.display(self.title, tally, lambda: self.cf.stats, loop.time)
        display.start()
        ticker = loop.create_task(_ticker(display))
        work = loop.create_task(consume())
        # A display that cannot write (full disk, EIO) stops the run: nobody sees the rest.
        ticker.add_done_callback(lambda _: work.cancel())
        try:
            self.interrupted = await self.interrupt.run(work)
        except asyncio.CancelledError:
            if not ticker.done() or ticker.cancelled():
                raise
        finally:
            ticker.cancel()
            await asyncio.wait([ticker])  # ended, without re-raising its CancelledError
            self.seconds = loop.time() - tally.started
            display.stop()
        failure = None if ticker.cancelled() else ticker.exception()
        if failure is not None:
            raise failure

    def report(self, *, limit: int | None = None) -> int:
        """Print the jobs that did not complete and the summary; return the exit code."""
        tally, output = self.tally, self.output
        problems = tally.problems if limit is None else tally.problems[:limit]
        for outcome in problems:
            output.problem(problem_line(outcome))
        if len(problems) < len(tally.problems) and not output.json:
            output.problem(f"... and {len(tally.problems) - len(problems)} more")
        ended = ", ".join(_ended_words(tally.ended))
        if self.interrupted:
            left = tally.total - tally.done
            output.say(
                f"{self.interrupt.word} after {self.seconds:.1f} s: {tally.done} of "
                f"{tally.total} jobs ended ({ended}); {left} still going"
            )
        else:
            output.say(f"{_plural(tally.total, 'job')} in {self.seconds:.1f} s: {ended}")
        stats = self.cf.stats
        down = unavailable(stats)
        output.say(_traffic(stats) + ("" if down is None else f"; {down}"))
        return self.interrupt.exit_code if self.interrupted else exit_code(tally.ended)


def read_jobs(args: Iterable[str], stdin: TextIO) -> list[str]:
    """The JOB arguments, with `-` replaced by the lines of stdin (blanks and # skipped)."""
    jobs: list[str] = []
    for arg in args:
        if arg == "-":
            for line in stdin:
                line = line.strip()
                if line and not line.startswith("#"):
                    jobs.append(line)
        else:
            jobs.append(arg)
    return jobs


async def make_client(
    api: str | None,
    *,
    max_in_flight: int,
    rate_limit_share: float = jobwatch.DEFAULT_RATE_LIMIT_SHARE,
) -> Client:
    """A client for `--api` / `JOBWATCH_TOKEN` / the cf CLI login.

    Raises:
        ConfigError: no usable target or token.
    """
    token = os.environ.get(TOKEN_ENV, "").strip() or None
    if api is not None and token is not None:
        return Client(
            api, token=token, max_in_flight=max_in_flight, rate_limit_share=rate_limit_share
        )
    kwargs: dict[str, Any] = {"max_in_flight": max_in_flight, "rate_limit_share": rate_limit_share}
    if token is not None:
        kwargs["token"] = token
    try:
        login = Client.from_cf_config(**kwargs)
    except ConfigError as exc:
        if api is None:
            hint = f" (or pass --api URL and set {TOKEN_ENV})"
        else:
            hint = f" (or set {TOKEN_ENV} to a token for {api})"
        raise ConfigError(f"{exc}{hint}") from None
    if api is None:
        return login
    # The cf login's token was issued for its own target: never send it elsewhere.
    try:
        wanted = Client(api, max_in_flight=1)
    except ConfigError:
        await login.aclose()
        raise
    await wanted.aclose()
    if wanted.api_url != login.api_url:
        await login.aclose()
        raise ConfigError(
            f"--api {wanted.api_url} is not the cf CLI target ({login.api_url}); the cf "
            f"login's token is only sent to its own target: set {TOKEN_ENV} for this API"
        )
    return login


async def cmd_wait(args: argparse.Namespace, output: Output, interrupt: Interrupt) -> int:
    """`jobwatch wait JOB...`."""
    refs = read_jobs(args.jobs, sys.stdin)
    if not refs:
        output.say("no jobs to wait on")
        return EXIT_OK
    async with await make_client(
        args.api, max_in_flight=args.max_in_flight, rate_limit_share=args.rate_limit_share
    ) as cf:
        run = Run(cf, output, interrupt, f"jobwatch: waiting on jobs at {cf.api_url}")
        await run.wait(refs, timeout=args.timeout)
        return run.report()


async def cmd_get(args: argparse.Namespace, output: Output, interrupt: Interrupt) -> int:
    """`jobwatch get JOB...`: one status check each, as a table."""
    refs = read_jobs(args.jobs, sys.stdin)
    if not refs:
        return EXIT_OK
    async with await make_client(
        args.api, max_in_flight=args.max_in_flight, rate_limit_share=args.rate_limit_share
    ) as cf:
        loop = asyncio.get_running_loop()
        started = loop.time()
        results: dict[str, Outcome] = {}

        async def check() -> None:
            results.update(await cf.get_jobs(refs, timeout=args.timeout))

        interrupted = await interrupt.run(check())
        if interrupted:
            output.say(interrupt.word)
            return interrupt.exit_code
        seconds = loop.time() - started
        ended: Counter[str] = Counter(classify(outcome) for outcome in results.values())
        for outcome in results.values():
            output.record(outcome, seconds)
        if not output.json:
            rows = [
                outcome
                for outcome in results.values()
                if not output.quiet or classify(outcome) != COMPLETE
            ]
            for line in job_table(rows):
                output.row(line)
        return exit_code(ended)
