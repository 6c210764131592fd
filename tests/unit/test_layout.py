"""The package's architecture, read from its imports: it never imports Airflow, TensorFlow is
imported only where a model runs, and imports point one way (STYLE.md: dags -> steps ->
{ingest, scaling, windowing, training -> models, evaluation, report} -> {artifacts, spec}), so a
newcomer can trust the tree."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT

PACKAGE = PROJECT_ROOT / "include" / "freshcast"
# The steps in the order their DAGs run them: a step module may import the ones before it.
STEP_ORDER = ("run_folder", "prepare", "training", "scoring", "serving", "reporting", "forecasting")
# The local runner's layers, lowest first.
LOCAL_ORDER = ("config", "api", "processes", "commands", "status", "__main__")
# The upper parts of the package (where tasks start, what a person reads, the local runner):
# which of them each part may import. Every other module imports none of them.
UPPER = ("steps", "local", "views", "pages", "report")
MAY_IMPORT = {
    "steps": {"steps", "report"},  # the report step draws the report
    "views": {"views", "pages", "report"},
    "pages": {"pages"},
    "report": {"report"},
    "local": {"local"},
}
HEAVY = ("tensorflow", "keras")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports(path: Path, *, top_level_only: bool = False) -> set[str]:
    """Every module `path` imports (`from a import b` counts as a and, if it is one, a.b)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else ast.walk(tree)
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            named = {f"{node.module}.{alias.name}" for alias in node.names}
            found |= named & set(MODULES)
    return found


def freshcast_imports(name: str) -> set[str]:
    return {m for m in imports(MODULES[name]) if m in MODULES and m != name}


def test_the_tree_is_what_the_layout_says():
    assert {"freshcast.steps", "freshcast.local", "freshcast.report"} <= set(MODULES)
    steps = {m.rsplit(".", 1)[1] for m in MODULES if m.startswith("freshcast.steps.")}
    assert steps == {*STEP_ORDER, "in_process"}
    local = {m.rsplit(".", 1)[1] for m in MODULES if m.startswith("freshcast.local.")}
    assert local == set(LOCAL_ORDER)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_every_module_says_what_it_holds(name):
    assert ast.get_docstring(ast.parse(MODULES[name].read_text())), f"{name} has no docstring"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_the_package_never_imports_airflow(name):
    found = {m for m in imports(MODULES[name]) if m.split(".")[0] == "airflow"}
    assert not found, f"{name} imports {sorted(found)}: the package is tested without Airflow"
    client = {m for m in imports(MODULES[name]) if m.split(".")[0] == "airflow_client"}
    assert not client or name == "freshcast.local.api", "only local.api speaks to Airflow's API"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_tensorflow_is_imported_only_inside_what_runs_a_model(name):
    at_import = imports(MODULES[name], top_level_only=True)
    heavy = {m for m in at_import if m.split(".")[0] in HEAVY}
    assert not heavy or name == "freshcast.training", f"{name} imports {sorted(heavy)} at import"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_point_one_way(name):
    part = name.split(".")[1] if "." in name else ""
    allowed = MAY_IMPORT.get(part, set())
    above = {
        m
        for m in freshcast_imports(name)
        if "." in m and m.split(".")[1] in UPPER and m.split(".")[1] not in allowed
    }
    assert not above, f"{name} imports {sorted(above)}, which is above it"


@pytest.mark.parametrize(
    ("prefix", "order"), [("freshcast.steps", STEP_ORDER), ("freshcast.local", LOCAL_ORDER)]
)
def test_modules_of_a_package_import_only_those_below_them(prefix, order):
    for rank, part in enumerate(order):
        imported = freshcast_imports(f"{prefix}.{part}")
        siblings = {m.rsplit(".", 1)[1] for m in imported if m.startswith(prefix + ".")}
        above = siblings - set(order[:rank])
        assert not above, f"{prefix}.{part} imports {sorted(above)}, which come after it"
