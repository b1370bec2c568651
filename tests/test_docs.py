"""The docs' references stay true: every test file they cite exists, every link to a section and every
quoted section name ("README, "The result"") names a heading that exists, and every gesture an example
shows is one the code emits (issue #22 found `tests/test_chaos.py`, "Result schema" and "peace")."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hgr.common.inference.gestures import GESTURES

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", ROOT / "tests" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
IDS = [str(d.relative_to(ROOT)) for d in DOCS]


def headings(doc: Path) -> list[str]:
    """The heading texts of a Markdown file, without their #s and backticks."""
    return [re.sub(r"^#+\s*", "", line).replace("`", "").strip()
            for line in doc.read_text().splitlines() if re.match(r"#{1,6} ", line)]


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


SECTION_LINK = r"\]\(([^)#\s]*)#([^)\s]+)\)"
QUOTED_SECTION = r'\b(README|[a-z_]+\.md),? \(?"([^"]{2,80})"'


def test_the_checks_see_what_they_check() -> None:
    """The patterns below find what they are meant to (a pattern that matches nothing checks nothing)."""
    assert anchor("Redis: one server, Sentinel, or a Cluster") == "redis-one-server-sentinel-or-a-cluster"
    assert "The result" in headings(ROOT / "README.md") and len(DOCS) >= 10
    text = "\n".join(d.read_text() for d in DOCS)
    assert len(re.findall(SECTION_LINK, text)) >= 5 and len(re.findall(QUOTED_SECTION, text)) >= 5
    assert len(re.findall(r"\btests/[\w/]+\.py\b", text)) >= 10


@pytest.mark.parametrize("doc", DOCS, ids=IDS)
def test_cited_test_files_exist(doc: Path) -> None:
    missing = sorted({m for m in re.findall(r"\btests/[\w/]+\.py\b", doc.read_text()) if not (ROOT / m).is_file()})
    assert not missing, f"{doc.name} cites {missing}"


@pytest.mark.parametrize("doc", DOCS, ids=IDS)
def test_section_links_resolve(doc: Path) -> None:
    broken = []
    for target, fragment in re.findall(SECTION_LINK, doc.read_text()):
        file = (doc.parent / target) if target else doc
        if not file.is_file() or fragment not in {anchor(h) for h in headings(file)}:
            broken.append(f"{target}#{fragment}")
    assert not broken, f"{doc.name}: {broken}"


@pytest.mark.parametrize("doc", DOCS, ids=IDS)
def test_quoted_section_names_exist(doc: Path) -> None:
    """`README "Configuration"`, `docs/deployment.md "Hardening"`, `architecture.md, "Hand pipeline"`: the
    heading is the quoted text (optionally followed by a parenthesised qualifier)."""
    broken = []
    for name, section in re.findall(QUOTED_SECTION, doc.read_text()):
        section = " ".join(section.split())
        file = ROOT / "README.md" if name == "README" else next(
            (f for f in (doc.parent / name, ROOT / "docs" / name) if f.is_file()), None)
        if file is None or not any(h == section or h.startswith(f"{section} (") for h in headings(file)):
            broken.append(f'{name} "{section}"')
    assert not broken, f"{doc.name}: {broken}"


@pytest.mark.parametrize("doc", DOCS, ids=IDS)
def test_example_gestures_are_the_codes(doc: Path) -> None:
    shown = set(re.findall(r'"gesture": "([a-z_]+)"', doc.read_text()))
    assert shown <= set(GESTURES), f"{doc.name} shows {sorted(shown - set(GESTURES))}"


@pytest.mark.parametrize("doc", DOCS, ids=IDS)
def test_linked_files_and_pictures_exist(doc: Path) -> None:
    # [text](path) and ![alt](path) to a file of the repository (not a URL, not only an anchor)
    targets = [t for t in re.findall(r"\]\(([^)#\s]+)(?:#[^)\s]*)?\)", doc.read_text()) if "://" not in t]
    missing = [t for t in targets if not (doc.parent / t).exists()]
    assert not missing, f"{doc.name} links to files that are not there: {missing}"
