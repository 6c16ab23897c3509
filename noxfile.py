"""The test suite on every Python that `requires-python` promises.

    nox                    # pytest on each of 3.11, 3.12, 3.13 found here, slow tests too
    nox -s tests-3.12      # one of them; arguments after `--` go to pytest
    nox -s tests-3.12 -- -m "not slow"     # without the slow tests

Each session installs `.[dev,cli]` (not editable) into its own venv under
build/ci/nox. Lint, mypy and coverage run once, on the default Python, in
`make test`; `.ci/run` runs `make test` and then these sessions for the other
Pythons. An interpreter is found by `.ci/find-python` (on PATH, or installed by
pyenv even when not the active version), never downloaded.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import nox

PYTHONS = ["3.11", "3.12", "3.13"]

ROOT = Path(__file__).resolve().parent
BUILD = ROOT / "build" / "ci"

nox.needs_version = ">=2025.5.1"
nox.options.sessions = ["tests"]
nox.options.envdir = str(BUILD / "nox")
nox.options.download_python = "never"
nox.options.default_venv_backend = "virtualenv"
nox.options.reuse_venv = "yes"


def _expose_interpreters() -> None:
    """Put a `pythonX.Y` for each of PYTHONS found here first on PATH.

    nox looks interpreters up by name on PATH, where a pyenv shim for a version
    that is installed but not active is found and then fails; `.ci/find-python`
    also looks past those shims. A version not found is left for nox to report.
    """
    links = BUILD / "bin"
    links.mkdir(parents=True, exist_ok=True)
    for version in PYTHONS:
        found = subprocess.run(
            ["bash", str(ROOT / ".ci" / "find-python"), version],
            capture_output=True,
            text=True,
            check=False,
        )
        link = links / f"python{version}"
        if found.returncode != 0:
            link.unlink(missing_ok=True)
            continue
        # Atomically: .ci/run starts two nox at once, each reading this file.
        fresh = links / f".python{version}.{os.getpid()}"
        fresh.unlink(missing_ok=True)
        fresh.symlink_to(found.stdout.strip())
        fresh.replace(link)
    os.environ["PATH"] = os.pathsep.join([str(links), os.environ.get("PATH", "")])


_expose_interpreters()


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """The whole pytest suite, the slow tests too; no coverage (that is `make test`'s)."""
    session.install(".[dev,cli]")
    # A cache of its own: .ci/run may run two of these sessions at once.
    cache = BUILD / "pytest-cache" / str(session.python)
    # `-m`: every test (addopts leave the slow ones out); one in posargs comes later and wins.
    every = ["-m", "slow or not slow"]
    session.run("python", "-m", "pytest", "-o", f"cache_dir={cache}", *every, *session.posargs)
