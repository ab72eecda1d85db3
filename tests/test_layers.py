"""The house's floors: every import in `wm_core` (at the top of a module, inside a function, under TYPE_CHECKING)
points down the layer order below or stays inside its own room, and no modules import each other in a loop.

A room is a top-level module (`wm_core.train`) or a subpackage (`wm_core.data`). Rooms on one floor stand side by
side and import nothing from each other. A string the registry imports lazily ("wm_core.models.ha:VaeMdnRnn") is
no import: the registry names families, it does not depend on them.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "wm_core"

# Bottom first. Where two rooms could go either way the one that serves the other stands lower.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors", "files", "spec", "memory", "distributed"),  # foundations: no model, no env
    ("data",),  # envs, episodes on disk, samplers, data policies
    ("protocol",),  # the world-model contract
    ("models", "registry"),  # the families, and the names that find them
    ("checkpoint_checks",),
    ("checkpoint",),
    ("dream", "model_cache", "run_checks"),  # a model as an env; loaded models shared; a run's checks
    ("run_data",),  # what a training run is, and its data
    ("train", "evaluation"),  # the one training loop; the model card
    ("agents",),  # behaviours acting through a model, and the loop that trains them
    ("interactive", "bench"),  # sessions people play; measurements
    ("commands",),
    ("cli",),
    ("wm_core",),  # the public names (`wm_core/__init__.py`)
)
FLOOR = {room: floor for floor, rooms in enumerate(LAYERS) for room in rooms}


def modules() -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (file, is a package's __init__)."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        package = parts[-1] == "__init__"
        out[".".join(parts[:-1] if package else parts)] = (path, package)
    return out


def imports(name: str, path: Path, package: bool, known: set[str]) -> set[str]:
    """The wm_core modules `name` imports anywhere in its file (`from P import m` counts as m when m is a module)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = name.split(".") if package else name.split(".")[:-1]
            if node.level:
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            subs = {f"{target}.{a.name}" for a in node.names} & known
            found |= subs if subs and len(subs) == len(node.names) else subs | {target}
    return {m for m in found if m == "wm_core" or m.startswith("wm_core.")}


def graph() -> dict[str, set[str]]:
    """Module -> the wm_core modules it imports."""
    mods = modules()
    return {name: imports(name, path, package, set(mods)) - {name} for name, (path, package) in mods.items()}


def room(module: str) -> str:
    """`wm_core.data.store` -> "data"; the package itself is "wm_core"."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "wm_core"


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one node (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_every_room_has_a_floor() -> None:
    rooms = {room(m) for m in modules()}
    assert rooms == set(FLOOR), f"rooms without a floor: {sorted(rooms - set(FLOOR))}; gone: {set(FLOOR) - rooms}"


def test_imports_point_down() -> None:
    wrong = []
    for source, targets in graph().items():
        for target in sorted(targets):
            a, b = room(source), room(target)
            if a != b and FLOOR[b] >= FLOOR[a]:
                side = "sideways" if FLOOR[b] == FLOOR[a] else "up"
                wrong.append(f"{source} -> {target} ({a} floor {FLOOR[a]} imports {side}: {b} floor {FLOOR[b]})")
    assert not wrong, "imports that do not point down:\n" + "\n".join(wrong)


def test_no_module_circles() -> None:
    edges = graph()
    found = cycles(edges)
    assert not found, "modules that import each other in a loop:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_no_room_circles() -> None:
    rooms: dict[str, set[str]] = {}
    for source, targets in graph().items():
        rooms.setdefault(room(source), set()).update(room(t) for t in targets if room(t) != room(source))
    found = cycles(rooms)
    assert not found, "rooms that import each other in a loop:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_the_checker_sees_function_level_and_relative_imports(tmp_path: Path) -> None:
    """The parser itself: an import inside a function and a relative `from .. import module` both count."""
    source = tmp_path / "m.py"
    source.write_text("from ..data import store, collect\n\ndef f():\n    from ..agents.agent import load_agent\n")
    known = {"wm_core.data", "wm_core.data.store", "wm_core.agents.agent"}
    got = imports("wm_core.evaluation.m", source, False, known)
    assert got == {"wm_core.data", "wm_core.data.store", "wm_core.agents.agent"}
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(edges) == [["a", "b", "c"]]
