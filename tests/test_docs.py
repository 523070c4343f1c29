"""The documentation builds and the README's links resolve.

``mkdocs build --strict`` (``mkdocs.yml``: the pages under ``docs/``, the top-level documents they
include, the API reference from the docstrings) fails on any warning: a link to a page or anchor
that does not exist, an included file that is missing, an API object that cannot be found. The
README is read on GitHub, not built, so its relative links are checked here against the files of
the repository."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```\s*$", re.S | re.M)


def test_the_documentation_builds_strictly(tmp_path):
    for package in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python"):
        if importlib.util.find_spec(package.split(".")[0]) is None or importlib.util.find_spec(package) is None:
            pytest.skip(f"{package} is not installed (the documentation's requirements: see docs/installation.md)")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "site" / "index.html").is_file()
    assert (tmp_path / "site" / "api" / "model" / "index.html").is_file()


def readme_links() -> list[str]:
    text = FENCE.sub("", README.read_text(encoding="utf-8"))
    return [target for target in LINK.findall(text) if not re.match(r"[a-z][a-z0-9+.-]*:", target)]


def test_every_relative_link_of_the_readme_resolves_to_a_file_of_the_repository():
    links = readme_links()
    assert links, "the README links to the documentation"
    missing = [link for link in links if not (ROOT / link.split("#")[0]).is_file()]
    assert not missing, missing
