"""The README and the docs site say what the code does: the example runs, the links hold."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from jobwatch import _cli

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
#: The README is the first screen a newcomer sees, then the design notes (a table of
#: the modules); the depth lives in docs/.
README_MAX_LINES = 100


def _readme() -> str:
    return README.read_text(encoding="utf-8")


def test_readme_example_runs_as_pasted(tmp_path: Path) -> None:
    """The README's first Python block runs on its own, warnings as errors, and prints outcomes."""
    match = re.search(r"^```python\n(.*?)^```$", _readme(), re.DOTALL | re.MULTILINE)
    assert match, "README.md has no ```python block"
    example = tmp_path / "example.py"
    example.write_text(match.group(1), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COV_", "PYTHONWARN"))}
    done = subprocess.run(
        [sys.executable, "-W", "error", str(example)],
        cwd=tmp_path,  # a user's directory: only the installed jobwatch is importable
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr == ""
    lines = done.stdout.splitlines()
    assert lines[0] == "app.delete COMPLETE"
    assert len(lines) == 3
    assert lines[1].endswith(" COMPLETE")
    assert " FAILED: " in lines[2]


def test_readme_stays_one_screen_with_the_two_commands() -> None:
    """The README is short and names `make demo` and `make test`."""
    text = _readme()
    assert len(text.splitlines()) <= README_MAX_LINES
    assert "make demo" in text
    assert "make test" in text


def test_readme_links_point_at_files_of_the_repository() -> None:
    """Every relative link of the README names a file that exists (GitHub renders them)."""
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", _readme())
    local = [t for t in targets if "://" not in t]
    assert any(t.startswith("docs/") for t in local)
    missing = [t for t in local if not (ROOT / t).is_file()]
    assert not missing


def test_docs_nav_and_pages_match() -> None:
    """mkdocs.yml's nav lists every page under docs/, and every page it lists exists."""
    config = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    nav = config.split("\nnav:\n", 1)[1]
    listed = re.findall(r"^\s+- (?:[^:\n]+: )?(\S+\.md)$", nav, re.MULTILINE)
    pages = sorted(str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md"))
    assert sorted(listed) == pages


def test_cli_page_lists_every_exit_code() -> None:
    """The command-line page's exit-code table has a row for each code the CLI uses."""
    page = (DOCS / "guide" / "cli.md").read_text(encoding="utf-8")
    section = page.split("\n## Exit codes\n", 1)[1].split("\n## ", 1)[0]
    documented = {int(code) for code in re.findall(r"^\| (\d+) \|", section, re.MULTILINE)}
    used = {value for name, value in vars(_cli).items() if name.startswith("EXIT_")}
    assert documented == used
