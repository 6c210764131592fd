"""The documentation tells the truth about the repository: the tests the reliability page names
exist, every relative link and `#anchor` leads somewhere, every `make` target mentioned is in the
Makefile, and the README stays a user's first few screens with the troubleshooting they need."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT

README = PROJECT_ROOT / "README.md"
DOCS = sorted((PROJECT_ROOT / "docs").glob("*.md"))
DOCUMENTS = [README, PROJECT_ROOT / "CONTRIBUTING.md", *DOCS]
MAX_README_LINES = 300

FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`[^`\n]+`")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)
# `make X`, with variables before the target allowed (`make PIPELINE=x run`).
MAKE_CALL = re.compile(r"(?:^|[\s;&|(`])make\s+(?:\S+=\S*\s+)*([A-Za-z][\w-]*)")


def relative(path: Path) -> str:
    return str(path.relative_to(PROJECT_ROOT))


def prose(text: str) -> str:
    """`text` without fenced code blocks, which hold no links."""
    return FENCE.sub("", text)


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lowercase, punctuation dropped (hyphens and underscores
    kept), each space a hyphen."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text
    text = text.lower().replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every anchor of `path`'s headings; a repeated heading gets -1, -2, ... as on GitHub."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    for heading in HEADING.findall(prose(path.read_text())):
        base = anchor(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def test_anchor_follows_githubs_rules():
    assert anchor("Serving: registry, gate and forecasts") == "serving-registry-gate-and-forecasts"
    assert anchor("`make stop`") == "make-stop"
    assert anchor("The arithmetic for 1,000 pipelines") == "the-arithmetic-for-1000-pipelines"
    assert anchor("What `make run` prints") == "what-make-run-prints"
    assert anchor("A spec does not load (import error)") == "a-spec-does-not-load-import-error"


# ------------------------------------------------------------------ tests the documents name


def named_tests(text: str) -> list[tuple[str, str]]:
    """(file, test) for every `tests/x.py::test_y` and every `::test_z` after one on its line."""
    named = []
    for number, line in enumerate(text.splitlines(), 1):
        current = None
        for match in re.finditer(r"`(tests/[\w/]+\.py)?::(\w+)`", line):
            current = match.group(1) or current
            assert current, f"line {number} names ::{match.group(2)} before any test file"
            named.append((current, match.group(2)))
    return named


def test_every_test_the_reliability_page_names_exists():
    named = named_tests((PROJECT_ROOT / "docs" / "reliability.md").read_text())
    assert len(named) >= 20
    missing = []
    for path, name in named:
        file = PROJECT_ROOT / path
        defined = file.is_file() and re.search(
            rf"^(async )?def {name}\(", file.read_text(), re.MULTILINE
        )
        if not defined:
            missing.append(f"{path}::{name}")
    assert missing == []


# ----------------------------------------------------------------------------------- links


def links(path: Path) -> list[str]:
    text = INLINE_CODE.sub("", prose(path.read_text()))
    return [target for target in LINK.findall(text) if not re.match(r"[a-z]+:", target)]


@pytest.mark.parametrize("document", DOCUMENTS, ids=relative)
def test_every_relative_link_leads_somewhere(document):
    broken = []
    for target in links(document):
        file, _, fragment = target.partition("#")
        destination = (document.parent / file).resolve() if file else document
        if not destination.exists():
            broken.append(f"{target}: no such file")
        elif fragment and destination.suffix == ".md" and fragment not in anchors(destination):
            broken.append(f"{target}: no heading with that anchor in {relative(destination)}")
    assert broken == []


def test_the_index_links_every_document():
    index = PROJECT_ROOT / "docs" / "README.md"
    linked = {(index.parent / t.partition("#")[0]).resolve() for t in links(index)}
    assert [relative(d) for d in DOCS if d != index and d not in linked] == []


# --------------------------------------------------------------------------- make targets


def makefile_targets() -> set[str]:
    text = (PROJECT_ROOT / "Makefile").read_text()
    return set(re.findall(r"^([A-Za-z][\w-]*)\s*:(?!=)", text, re.MULTILINE))


def mentioned_targets(text: str) -> set[str]:
    """Targets of `make X` inside code: inline spans and fenced blocks."""
    code = [m.group(0) for m in FENCE.finditer(text)]
    code += INLINE_CODE.findall(FENCE.sub("", text))
    return {target for snippet in code for target in MAKE_CALL.findall(snippet)}


def test_makefile_targets_are_read():
    assert {"run", "stop", "status", "test", "bench", "lint", "format"} <= makefile_targets()


@pytest.mark.parametrize("document", DOCUMENTS, ids=relative)
def test_every_make_target_mentioned_exists(document):
    mentioned = mentioned_targets(document.read_text())
    assert mentioned - makefile_targets() == set()


# --------------------------------------------------------------------------------- README


def section(text: str, heading: str) -> str:
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def test_readme_fits_on_a_few_screens():
    lines = README.read_text().count("\n")
    assert lines < MAX_README_LINES, f"README.md has {lines} lines; move reference into docs/"


@pytest.mark.parametrize(
    ("problem", "phrases"),
    [
        ("a run that trained nothing", ["trained nothing", "data_changed", '"force": true']),
        ("a refused candidate", ["refused", "champion v1 kept", "decision.json"]),
        ("empty forecast accuracy", ["accuracy", "no actuals have arrived yet"]),
        ("SQLite's lock", ["database is locked", "FRESHCAST_DATABASE_URL"]),
        ("a port in use", ["port 8080", "AIRFLOW_PORT"]),
        ("a spec import error", ["import error", "spec_errors.py", "not loaded"]),
    ],
)
def test_readme_troubleshooting_covers(problem, phrases):
    troubleshooting = section(README.read_text(), "Troubleshooting").lower()
    missing = [p for p in phrases if p.lower() not in troubleshooting]
    assert missing == [], f"the README's troubleshooting says nothing of {problem}: {missing}"


def test_readme_links_every_document():
    targets = {t.partition("#")[0] for t in links(README)}
    missing = [relative(d) for d in DOCS if relative(d) not in targets and d.name != "README.md"]
    assert missing == []


def test_ci_runs_the_test_command_the_readme_gives():
    assert "`make test`" in README.read_text()
    ci = (PROJECT_ROOT / ".ci" / "run").read_text().splitlines()
    assert any(line.startswith("make test") for line in ci)
