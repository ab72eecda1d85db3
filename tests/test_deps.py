"""Every third-party import the project makes is declared in pyproject.toml.

A fresh virtual environment (what `.ci/run` builds) has only what pyproject declares, so an import that works
on a developer's machine because something else put the package there fails a newcomer at once. The library,
the app and the envs' lazily required modules must be runtime deps (or a declared extra); tests, benchmarks
and scripts may also use the `test` extra.
"""

import ast
import re
import sys
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # stdlib from Python 3.11

ROOT = Path(__file__).resolve().parent.parent
RUNTIME_ROOTS = ["wm_core", "playground", "app.py"]
TOOL_ROOTS = ["tests", "benchmarks", "scripts"]
# import name -> the requirement that provides it, where the two differ
PROVIDED_BY = {
    "PIL": "pillow",
    "cv2": "opencv-python",
    "yaml": "pyyaml",
    "ale_py": "ale-py",
    "Box2D": "gymnasium[box2d]",
    "sklearn": "scikit-learn",
    "skimage": "scikit-image",
    "gradio_client": "gradio-client",
    "google": "protobuf",
}


def normalise(requirement: str) -> str:
    """'Gymnasium[Box2D] >=1.0' -> 'gymnasium[box2d]'; 'gradio_client' -> 'gradio-client' (PEP 503 names)."""
    m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?", requirement)
    assert m, requirement
    name = re.sub(r"[-_.]+", "-", m.group(1)).lower()
    return name + (m.group(2) or "").lower().replace(" ", "")


def declared() -> tuple[set[str], set[str]]:
    """(runtime requirements with every non-test extra, the test extra's), each also by its bare name."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project.get("optional-dependencies", {})
    runtime = [*project["dependencies"], *(r for k, rs in extras.items() if k != "test" for r in rs)]

    def names(reqs: list[str]) -> set[str]:
        keys = {normalise(r) for r in reqs}
        return keys | {k.split("[")[0] for k in keys}

    return names(runtime), names(extras.get("test", []))


def first_party(path: Path) -> set[str]:
    """Names importable without installing anything: top-level entries of the repo, the file's siblings, and the
    modules of tests/, benchmarks/ and scripts/ (a test may put scripts/ on sys.path to import one)."""
    here = {p.stem for p in path.parent.glob("*.py")} | {p.name for p in path.parent.iterdir() if p.is_dir()}
    tools = {p.stem for root in TOOL_ROOTS if (ROOT / root).is_dir() for p in (ROOT / root).glob("*.py")}
    return here | tools | {p.stem if p.suffix == ".py" else p.name for p in ROOT.iterdir()}


def imports(path: Path) -> set[str]:
    """Top-level module names of the absolute imports in one file (conditional imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def undeclared(roots: list[str], allowed: set[str]) -> list[str]:
    """'file: module (needs requirement)' for each third-party import under `roots` not in `allowed`."""
    missing = []
    for root in roots:
        base = ROOT / root
        for path in [base] if base.is_file() else sorted(base.rglob("*.py")):
            for module in sorted(imports(path) - set(sys.stdlib_module_names) - first_party(path)):
                needed = normalise(PROVIDED_BY.get(module, module))
                if needed not in allowed:
                    missing.append(f"{path.relative_to(ROOT)}: {module} (needs {needed})")
    return missing


def test_the_library_and_app_import_only_runtime_deps() -> None:
    runtime, _ = declared()
    assert undeclared(RUNTIME_ROOTS, runtime) == []


def test_tests_benchmarks_and_scripts_import_only_declared_deps() -> None:
    runtime, test = declared()
    assert undeclared(TOOL_ROOTS, runtime | test) == []


def test_the_envs_lazily_required_modules_are_declared_extras() -> None:
    from wm_core.data.envs import CATALOG

    runtime, _ = declared()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for entry in CATALOG.values():
        if entry.requires:
            assert normalise(PROVIDED_BY.get(entry.requires, entry.requires)) in runtime, entry.env_id
            assert entry.extra in project["optional-dependencies"], entry.env_id


def test_the_check_catches_an_undeclared_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "bench.py").write_text("import requests\nimport yaml\nfrom PIL import Image\nimport numpy\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert undeclared(["bench.py"], {"numpy", "pillow"}) == [
        "bench.py: requests (needs requests)",
        "bench.py: yaml (needs pyyaml)",
    ]
