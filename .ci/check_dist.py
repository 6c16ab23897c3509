"""What `.ci/dist-check` asserts about the built and the installed distribution.

    python .ci/check_dist.py built DIST_DIR    # with CI's tools venv (packaging)
    python .ci/check_dist.py installed VERSION # with the fresh venv's Python

`built` reads pyproject.toml and checks the one wheel and the one sdist in
DIST_DIR against it: version, metadata, entry points, py.typed, the license,
and which files each carries. `installed` checks, from outside the source tree,
that the jobwatch imported is the installed one, not editable, of VERSION, and
that every entry point it declares loads. Standard library only, apart from
`packaging` in `built`.
"""

from __future__ import annotations

import configparser
import email.parser
import json
import sys
import tarfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "jobwatch"
# The Pythons CI runs the suite on (.ci/run, noxfile.py): each must be classified.
TESTED = ("3.11", "3.12", "3.13")

failures: list[str] = []


def check(ok: object, message: str) -> None:
    if not ok:
        failures.append(message)


def finish(what: str) -> None:
    if failures:
        print(f"check_dist {what}: {len(failures)} problem(s)", file=sys.stderr)
        for failure in failures:
            print(f"  - {failure}", file=sys.stderr)
        sys.exit(1)
    print(f"check_dist {what}: ok")


def declared_entry_points(project: dict[str, Any]) -> dict[str, dict[str, str]]:
    groups: dict[str, dict[str, str]] = {}
    for key, group in (("scripts", "console_scripts"), ("gui-scripts", "gui_scripts")):
        if project.get(key):
            groups[group] = dict(project[key])
    for group, entries in project.get("entry-points", {}).items():
        groups[group] = dict(entries)
    return groups


def source_files(folder: str) -> set[str]:
    base = ROOT / folder
    return {
        PurePosixPath(path.relative_to(ROOT)).as_posix()
        for path in base.rglob("*")
        if path.is_file()
        and "__pycache__" not in path.parts
        and path.suffix != ".pyc"
        # An editor's or another tool's scratch file in a work tree, not CI's clone.
        and not any(part.startswith(".") for part in path.relative_to(base).parts)
    }


def built(dist_dir: Path) -> None:
    import tomllib

    from packaging.specifiers import SpecifierSet
    from packaging.utils import canonicalize_name
    from packaging.version import Version

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    version = project["version"]
    stem = f"{PACKAGE}-{version}"

    wheels = sorted(dist_dir.glob("*.whl"))
    sdists = sorted(dist_dir.glob("*.tar.gz"))
    check([w.name for w in wheels] == [f"{stem}-py3-none-any.whl"], f"one pure wheel: {wheels}")
    check([s.name for s in sdists] == [f"{stem}.tar.gz"], f"one sdist: {sdists}")
    if failures:
        finish("built")

    # The wheel: the package, its py.typed, and its dist-info; nothing else.
    with zipfile.ZipFile(wheels[0]) as wheel:
        names = set(wheel.namelist())
        info = f"{stem}.dist-info"
        metadata = email.parser.Parser().parsestr(wheel.read(f"{info}/METADATA").decode())
        entry_points_txt = (
            wheel.read(f"{info}/entry_points.txt").decode()
            if f"{info}/entry_points.txt" in names
            else ""
        )
    package_files = {n for n in names if n.startswith(f"{PACKAGE}/")}
    check(f"{PACKAGE}/py.typed" in names, "py.typed is not in the wheel (PEP 561: typed)")
    expected = source_files(PACKAGE)
    check(
        package_files == expected,
        f"wheel's {PACKAGE}/ differs from the source tree's: "
        f"missing {sorted(expected - package_files)}, extra {sorted(package_files - expected)}",
    )
    others = sorted(n for n in names - package_files if not n.startswith(f"{info}/"))
    check(not others, f"files outside {PACKAGE}/ and {info}/ in the wheel: {others}")
    check(f"{info}/licenses/LICENSE" in names, "LICENSE is not in the wheel's dist-info")

    # Its metadata, against pyproject.toml.
    check(metadata["Name"] == PACKAGE, f"Name: {metadata['Name']}")
    check(metadata["Version"] == version, f"Version: {metadata['Version']} != {version}")
    check(
        metadata["Requires-Python"] == project["requires-python"],
        f"Requires-Python: {metadata['Requires-Python']}",
    )
    check(
        metadata["License-Expression"] == project["license"],
        f"License-Expression: {metadata['License-Expression']}",
    )
    check("LICENSE" in metadata.get_all("License-File", []), "License-File: LICENSE missing")
    check(
        metadata["Description-Content-Type"] == "text/markdown",
        f"Description-Content-Type: {metadata['Description-Content-Type']}",
    )
    check(
        str(metadata.get_payload()).strip(),
        "the long description (README.md) is empty",
    )
    extras = set(metadata.get_all("Provides-Extra", []))
    declared_extras = {canonicalize_name(e) for e in project.get("optional-dependencies", {})}
    check(extras == declared_extras, f"Provides-Extra {sorted(extras)} != {declared_extras}")
    classifiers = set(metadata.get_all("Classifier", []))
    check("Typing :: Typed" in classifiers, "classifier Typing :: Typed missing")
    supported = SpecifierSet(project["requires-python"])
    prefix = "Programming Language :: Python :: 3."
    classified = {c.rsplit(" :: ", 1)[1] for c in classifiers if c.startswith(prefix)}
    for python in TESTED:
        check(python in classified, f"classifier {prefix}{python[2:]} missing (CI tests it)")
    for python in sorted(classified - set(TESTED)):
        check(False, f"classified for Python {python}, which CI does not test")
    for python in classified:
        check(Version(f"{python}.0") in supported, f"Python {python} classified, not in requires")

    # Entry points: exactly what pyproject.toml declares (console script, pytest11, ...).
    parser = configparser.ConfigParser(delimiters=("=",), interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keep names' case
    parser.read_string(entry_points_txt)
    in_wheel = {
        group: {name.strip(): value.strip() for name, value in parser.items(group)}
        for group in parser.sections()
    }
    declared = declared_entry_points(project)
    check(in_wheel == declared, f"entry points {in_wheel} != pyproject's {declared}")
    check(
        in_wheel.get("console_scripts", {}).get(PACKAGE) == "jobwatch._cli:main",
        "console script jobwatch = jobwatch._cli:main missing",
    )

    # The sdist: enough to build the wheel (build made the wheel from it) and to
    # run the tests; none of a work tree's venvs, caches or build output.
    with tarfile.open(sdists[0]) as sdist:
        members = {m.name.removeprefix(f"{stem}/") for m in sdist.getmembers() if m.isfile()}
    for needed in ("pyproject.toml", "README.md", "LICENSE", "PKG-INFO"):
        check(needed in members, f"{needed} not in the sdist")
    for folder in (PACKAGE, "tests"):
        missing = sorted(source_files(folder) - members)
        check(not missing, f"sdist lacks {missing[:10]}")
    junk = sorted(
        m
        for m in members
        if m.split("/", 1)[0] in {".venv", "build", "dist", ".nox", ".git", ".hypothesis"}
        or "__pycache__/" in m
        or m.endswith(".pyc")
    )
    check(not junk, f"sdist carries work-tree junk: {junk[:10]}")

    for name, group in (("wheel", in_wheel), ("declared", declared)):
        print(f"{name} entry points: {json.dumps(group, sort_keys=True)}")
    print(f"wheel: {len(names)} files; sdist: {len(members)} files")
    finish("built")


def installed(version: str) -> None:
    import importlib.metadata as metadata
    import sysconfig

    here = Path.cwd().resolve()
    check(not (here / PACKAGE).exists(), f"run from outside the source tree, not {here}")
    import jobwatch

    location = Path(jobwatch.__file__).resolve().parent
    site = Path(sysconfig.get_path("purelib")).resolve()
    check(location == site / PACKAGE, f"imported {location}, not from {site}")
    check((location / "py.typed").is_file(), "py.typed is not installed")
    check(jobwatch.__version__ == version, f"jobwatch.__version__ {jobwatch.__version__}")
    dist = metadata.distribution(PACKAGE)
    check(dist.version == version, f"installed metadata says {dist.version}")
    direct_url = json.loads(dist.read_text("direct_url.json") or "{}")
    check("dir_info" not in direct_url, f"installed from a directory: {direct_url}")

    scripts = Path(sysconfig.get_path("scripts"))
    for entry_point in dist.entry_points:
        where = f"{entry_point.group}: {entry_point.name} = {entry_point.value}"
        if entry_point.group in {"console_scripts", "gui_scripts"}:
            check((scripts / entry_point.name).is_file(), f"no script for {where}")
        try:
            entry_point.load()
        except Exception as error:  # any failure to load is the finding
            check(False, f"{where} does not load: {error!r}")
        else:
            print(f"loads: {where}")
    finish("installed")


if __name__ == "__main__":
    match sys.argv[1:]:
        case ["built", dist_dir]:
            built(Path(dist_dir))
        case ["installed", version]:
            installed(version)
        case _:
            sys.exit(__doc__)
