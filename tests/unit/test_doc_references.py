"""Docs and code comments cite only what a clone of the repository holds."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# Absolute paths of the machine the project was built on, the old name of
# docs/library-facts.md, and relative paths that climb out of the repository.
OUTSIDE = re.compile(r"/work/|LIBRARY-FACTS|\.\./shared")
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def tracked(*patterns: str) -> list[Path]:
    out = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", *patterns],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [REPO / line for line in out.splitlines() if (REPO / line).is_file()]


def test_sources_and_docs_when_scanned_then_no_reference_leaves_the_repository() -> None:
    files = tracked("*.py", "*.md", "*.env", "Dockerfile", "*.yml", "*.toml")
    this = Path(__file__).resolve()

    offenders = [
        f"{path.relative_to(REPO)}:{number}: {line.strip()}"
        for path in files
        if path.resolve() != this
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if OUTSIDE.search(line)
    ]

    assert offenders == []


def test_markdown_links_when_relative_then_they_resolve_inside_the_repository() -> None:
    broken = []
    for doc in tracked("*.md"):
        for target in LINK.findall(doc.read_text(encoding="utf-8")):
            if "://" in target or target.startswith("mailto:"):
                continue
            resolved = (doc.parent / target).resolve()
            if not resolved.is_relative_to(REPO) or not resolved.exists():
                broken.append(f"{doc.relative_to(REPO)} -> {target}")

    assert broken == []
