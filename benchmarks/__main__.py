"""The runner: `python -m benchmarks [--quick] [--only NAME ...] [--output FILE] [--json FILE]`.

The full run (`make bench`) takes a few minutes and rewrites
`benchmarks/README.md`; `--quick` runs every benchmark small, in seconds, and
writes nothing unless asked (the test suite runs it so the benchmarks never rot).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from . import economy, learned, outage, overhead, peer, ratelimited, scale
from ._report import Section, table
from ._server import pin_client

BENCHMARKS: dict[str, Callable[[bool, Callable[[str], None]], Section]] = {
    "overhead": overhead.run,
    "scale": scale.run,
    "economy": economy.run,
    "peer": peer.run,
    "outage": outage.run,
    "learned": learned.run,
    "ratelimited": ratelimited.run,
}
REPORT = Path(__file__).with_name("README.md")
#: Written by `python -m benchmarks.soak` (minutes, so a run of its own); copied in here.
SOAK = Path(__file__).with_name("SOAK.md")
PACKAGES = ("jobwatch", "aiohttp", "attrs", "cattrs", "tenacity", "cloudfoundry-client")


def _versions() -> str:
    found = []
    for name in PACKAGES:
        try:
            found.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            found.append(f"{name} (not installed)")
    return ", ".join(found)


def render(sections: Sequence[Section], *, quick: bool, pinning: str, seconds: float) -> str:
    """The Markdown report."""
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# jobwatch benchmarks",
        "",
        "Written by `make bench` (`python -m benchmarks`); do not edit by hand."
        + (" **Quick mode: small sizes, not figures to quote.**" if quick else ""),
        "",
        f"- Run: {when}, {seconds:.0f} s in all.",
        f"- Python {platform.python_version()} ({platform.python_implementation()}) on "
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores; {pinning}.",
        f"- Packages: {_versions()}.",
        "- Each figure is the median of the rounds, followed by the lowest and highest "
        "round in parentheses. Ratios are taken round by round between runs made side by "
        "side (A B A B), then their median is given. The fake Cloud Controller "
        "(`jobwatch.testing.FakeCloudController`) runs in its own process on its own core.",
        "",
        "## Each figure against its target",
        "",
    ]
    rows = [
        [f.name, f.value, f.target, f.verdict] for section in sections for f in section.figures
    ]
    lines += table(["figure", "measured", "target", ""], rows)
    for section in sections:
        lines += ["", f"## {section.title}", "", *section.body]
    if SOAK.exists() and not quick:
        soak = [line for line in SOAK.read_text().splitlines() if not line.startswith("# ")]
        lines += ["", "## Soak (`python -m benchmarks.soak`, copied from SOAK.md)", *soak]
    return "\n".join(lines).rstrip() + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, in seconds")
    parser.add_argument("--only", nargs="+", choices=list(BENCHMARKS), help="run only these")
    parser.add_argument("--output", type=Path, help="where to write the Markdown report")
    parser.add_argument("--json", type=Path, help="also write the raw figures as JSON")
    args = parser.parse_args(argv)
    output: Path | None = args.output or (None if args.quick else REPORT)

    def progress(message: str) -> None:
        print(f"  {message}", file=sys.stderr, flush=True)

    pinning = pin_client()
    start = time.perf_counter()
    sections = []
    for name in args.only or list(BENCHMARKS):
        print(f"{name} ...", file=sys.stderr, flush=True)
        sections.append(BENCHMARKS[name](args.quick, progress))
    seconds = time.perf_counter() - start
    report = render(sections, quick=args.quick, pinning=pinning, seconds=seconds)
    print(report)
    if output is not None:
        output.write_text(report)
        print(f"wrote {output}", file=sys.stderr)
    if args.json is not None:
        data = {
            "quick": args.quick,
            "seconds": seconds,
            "sections": {
                s.key: {"figures": [asdict(f) for f in s.figures], "data": s.data}
                for s in sections
            },
        }
        args.json.write_text(json.dumps(data, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
