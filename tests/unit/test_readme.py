"""The README's reliability guarantees name tests that exist: a renamed or deleted test breaks
this one, so the table cannot promise what nothing checks."""

from __future__ import annotations

import re

from tests.conftest import PROJECT_ROOT


def test_every_test_the_reliability_section_names_exists():
    readme = (PROJECT_ROOT / "README.md").read_text()
    section = readme[readme.index("## Reliability") : readme.index("### SQLite and PostgreSQL")]
    named = []
    for line in section.splitlines():
        current = None
        for match in re.finditer(r"`(tests/[\w/]+\.py)?::(\w+)`", line):
            current = match.group(1) or current
            named.append((current, match.group(2)))
    assert len(named) >= 20
    missing = [
        f"{path}::{name}"
        for path, name in named
        if not re.search(rf"^def {name}\(", (PROJECT_ROOT / path).read_text(), re.MULTILINE)
    ]
    assert missing == []
