"""The package's layout (README "What is in the box"): stages as subpackages, imports that point only downward,
modules and classes of a readable size, and remote-code files that stand alone."""

import ast
import os

import pytest

from tests.conftest import REPO_ROOT

PACKAGE = os.path.join(REPO_ROOT, "hf_reservoir")
# The stages, lowest first: a module may import from its own stage and the stages before it, never after.
STAGES = ["utils", "models", "corpus", "evaluation", "hub", "trainer", "experiments", "analysis", "benchmarks", "cli"]
# Peers that must not import each other either way (neither is below the other).
PEERS = {("analysis", "benchmarks")}
MAX_MODULE_LINES = 500
MAX_CLASS_LINES = 150
SINGLE_FILE = {"models/reservoir_marian/modeling_reservoir.py"}  # the Hub's remote-code rule: one modeling file


def modules() -> list[str]:
    found = []
    for folder, _, files in os.walk(PACKAGE):
        found += [os.path.relpath(os.path.join(folder, f), PACKAGE) for f in files if f.endswith(".py")]
    return sorted(found)


def stage_of(relpath: str) -> str:
    first = relpath.split(os.sep)[0]
    return first[: -len(".py")] if first.endswith(".py") else first


def imported_stages(relpath: str) -> set[str]:
    """The stages a module imports from (relative and absolute imports, at any depth in the file)."""
    tree = ast.parse(open(os.path.join(PACKAGE, relpath), encoding="utf-8").read())
    package = relpath.split(os.sep)[:-1]
    stages = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                parts = base + (node.module.split(".") if node.module else [])
            elif node.module and node.module.split(".")[0] == "hf_reservoir":
                parts = node.module.split(".")[1:]
            else:
                continue
            if parts:
                stages.add(parts[0])
            else:  # ``from . import x`` at the top of the package
                stages.update(alias.name for alias in node.names)
    return {stage.removesuffix(".py") for stage in stages}


def test_every_module_belongs_to_a_stage():
    strays = [m for m in modules() if stage_of(m) not in STAGES and m != "__init__.py"]
    assert not strays, f"modules outside the stages {STAGES}: {strays}"


@pytest.mark.parametrize("relpath", modules())
def test_imports_point_only_downward(relpath):
    if relpath == "__init__.py":  # the package's front door may import any stage (it imports only the models)
        return
    own = STAGES.index(stage_of(relpath))
    upward = sorted(s for s in imported_stages(relpath) if s in STAGES and STAGES.index(s) > own)
    sideways = sorted(
        s for s in imported_stages(relpath) if (stage_of(relpath), s) in PEERS | {(b, a) for a, b in PEERS}
    )
    assert not upward and not sideways, (
        f"{relpath} ({stage_of(relpath)}) imports from later stages: {upward + sideways}"
    )


def test_the_package_imports_only_the_models():
    assert imported_stages("__init__.py") == {"models"}


@pytest.mark.parametrize("relpath", modules())
def test_modules_and_classes_stay_readable(relpath):
    source = open(os.path.join(PACKAGE, relpath), encoding="utf-8").read()
    lines = source.count("\n")
    if relpath not in SINGLE_FILE:
        assert lines <= MAX_MODULE_LINES, f"{relpath} has {lines} lines (at most {MAX_MODULE_LINES}): split it by job"
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef):
            length = node.end_lineno - node.lineno + 1
            assert length <= MAX_CLASS_LINES, f"{relpath}: class {node.name} has {length} lines"


def test_remote_code_files_import_only_each_other():
    folder = os.path.join(PACKAGE, "models", "reservoir_marian")
    for name in ("configuration_reservoir.py", "modeling_reservoir.py"):
        tree = ast.parse(open(os.path.join(folder, name), encoding="utf-8").read())
        relative = [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level]
        absolute = [
            n.module
            for n in ast.walk(tree)
            if isinstance(n, ast.ImportFrom) and not n.level and (n.module or "").startswith("hf_reservoir")
        ]
        assert not absolute, f"{name} imports {absolute}: remote code cannot import hf_reservoir"
        assert all(n.level == 1 and n.module == "configuration_reservoir" for n in relative), name


def test_tests_mirror_the_package():
    """Every module with behaviour of its own has its tests at the mirrored path (tests/<stage>/test_<module>.py)."""
    untested = []
    for relpath in modules():
        folder, name = os.path.split(relpath)
        if name == "__init__.py" or not folder:
            continue
        if not os.path.exists(os.path.join(REPO_ROOT, "tests", folder, f"test_{name}")):
            untested.append(relpath)
    assert set(untested) <= MIRROR_EXCEPTIONS, f"modules without tests/<stage>/test_<module>.py: {untested}"


# Modules whose tests live in a neighbour's file, with where.
MIRROR_EXCEPTIONS = {
    os.path.join("trainer", "turn_taking.py"),  # tests/experiments/test_lanes.py (the arm's side of a lane)
    os.path.join("experiments", "report_render.py"),  # tests/experiments/test_report.py
    os.path.join("experiments", "report_aggregate.py"),  # tests/experiments/test_report.py
    os.path.join("analysis", "probing", "report.py"),  # tests/analysis/probing/test_probe.py, tests/test_results.py
    # One test file for the benchmark commands (tests/benchmarks/test_benchmarks.py), each run --tiny.
    *(os.path.join("benchmarks", name) for name in ("compile_cost.py", "flops.py", "host_overhead.py")),
    *(os.path.join("benchmarks", name) for name in ("measure.py", "recipe_speed.py", "step_cost.py", "variants.py")),
}
