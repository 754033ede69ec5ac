"""The package's import graph: no cycles, hidden ones included, and no import side effects."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import uc_datasets

PACKAGE = Path(uc_datasets.__file__).resolve().parent


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def imported_names(name: str, path: Path, modules: dict[str, Path], *, type_checking: bool = False) -> set[str]:
    """The dotted names module ``name`` (at ``path``) imports, at module level or inside functions;
    imports under ``if TYPE_CHECKING:`` only with ``type_checking=True``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = set() if type_checking else _type_checking_lines(tree)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            targets.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets.add(mod)
            targets.update(f"{mod}.{a.name}" for a in node.names if f"{mod}.{a.name}" in modules)
    return targets


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports, at module level or inside functions (which run
    later, but still close a cycle), plus the parent packages every import executes first.
    Imports under ``if TYPE_CHECKING:`` never run and are left out."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges = set()
        for t in imported_names(name, path, modules):
            if not (t == "uc_datasets" or t.startswith("uc_datasets.")):
                continue
            parts = t.split(".")
            edges.update(p for p in (".".join(parts[:i]) for i in range(1, len(parts) + 1)) if p in modules)
        edges.discard(name)
        edges -= {a for a in (".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1))}
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (a list that starts and ends with the same module), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_inside_uc_datasets():
    graph = import_graph()
    assert len(graph) > 30 and "uc_datasets.registry" in graph["uc_datasets.pipeline"]
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_no_importlib_side_effects():
    """Only the package's lazy exports (PEP 562) import by name; nothing registers itself that way."""
    users = sorted(name for name, path in _modules().items() if "importlib" in path.read_text(encoding="utf-8"))
    assert users == ["uc_datasets"]


def test_the_evaluation_side_does_not_import_the_training_code():
    graph = import_graph()
    training = {"uc_datasets.methods.uc.fit", "uc_datasets.methods.uc.unlearnable_clusters",
                "uc_datasets.methods.uc.protector", "uc_datasets.registry", "uc_datasets.methods"}
    for name, edges in graph.items():
        if name.startswith("uc_datasets.evaluation"):
            assert not edges & training, (name, edges & training)


def test_library_modules_do_not_import_the_command_line():
    for name, edges in import_graph().items():
        if not name.startswith(("uc_datasets.commands", "uc_datasets.__main__")):
            assert not any(e.startswith("uc_datasets.commands") for e in edges), name


# --- layers --------------------------------------------------------------------------------

#: Layer of a module, by its dotted name: the first prefix that matches wins.
LAYERS = (
    ("uc_datasets._version", "ground"),
    ("uc_datasets.core", "core"),
    ("uc_datasets.methods", "methods"),
    ("uc_datasets.evaluation", "evaluation"),
    ("uc_datasets.commands", "commands"),
    ("uc_datasets.__main__", "commands"),
    ("uc_datasets", "top"),
)
#: Layer -> the layers its modules may import. The ground floor (``_version``) imports nothing
#: and everyone may import it; core imports no wing; a wing imports core and itself, never the
#: other wing; the top modules (``uc_datasets``, ``registry``, ``pipeline``, ``hub``) assemble
#: the wings; only the command line imports ``commands``.
ALLOWED = {
    "ground": set(),
    "core": {"ground", "core"},
    "methods": {"ground", "core", "methods"},
    "evaluation": {"ground", "core", "evaluation"},
    "top": {"ground", "core", "methods", "evaluation", "top"},
    "commands": {"ground", "core", "methods", "evaluation", "top", "commands"},
}
#: Edges that break the layers today, to shrink to nothing; a stale entry fails the test too.
KNOWN_VIOLATIONS: set[tuple[str, str]] = set()


def layer_of(module: str) -> str:
    return next(layer for prefix, layer in LAYERS if module == prefix or module.startswith(prefix + "."))


def layer_violations(graph: dict[str, set[str]]) -> set[tuple[str, str]]:
    """Every edge ``(importer, imported)`` of ``graph`` that :data:`ALLOWED` does not allow."""
    return {(name, edge) for name, edges in graph.items() for edge in edges
            if layer_of(edge) not in ALLOWED[layer_of(name)]}


def test_the_layering_check_catches_a_planted_wing_to_wing_import():
    graph = import_graph()
    planted = {**graph, "uc_datasets.evaluation.sweep": graph["uc_datasets.evaluation.sweep"]
               | {"uc_datasets.methods.uc.fit"}}
    assert layer_violations(planted) - layer_violations(graph) == {
        ("uc_datasets.evaluation.sweep", "uc_datasets.methods.uc.fit")}
    planted = {**graph, "uc_datasets.core.imaging": {"uc_datasets.evaluation.victims"}}
    assert ("uc_datasets.core.imaging", "uc_datasets.evaluation.victims") in layer_violations(planted)


def plant_package(tmp_path: Path, monkeypatch, files: dict[str, str]) -> None:
    """Make the checks read a planted ``uc_datasets`` package of ``files`` (path -> source), with its
    ``__init__.py`` files, instead of the real one."""
    pkg = tmp_path / "uc_datasets"
    for rel, text in {"__init__.py": "", **files}.items():
        path = pkg / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        (path.parent / "__init__.py").touch()
        path.write_text(text)
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", pkg)


def test_the_layering_check_sees_imports_inside_functions(tmp_path, monkeypatch):
    """A lazy import in a function body is an edge like any other."""
    plant_package(tmp_path, monkeypatch, {"methods/m.py": "",
                                          "core/c.py": "def f():\n    from ..methods import m\n    return m\n"})
    assert layer_violations(import_graph()) == {("uc_datasets.core.c", "uc_datasets.methods"),
                                               ("uc_datasets.core.c", "uc_datasets.methods.m")}


def test_core_imports_no_wing_and_no_wing_imports_another():
    violations = layer_violations(import_graph())
    assert violations - KNOWN_VIOLATIONS == set(), sorted(violations - KNOWN_VIOLATIONS)
    assert KNOWN_VIOLATIONS - violations == set(), f"fixed, remove from KNOWN_VIOLATIONS: {KNOWN_VIOLATIONS - violations}"


def root_importers() -> set[str]:
    """The modules below the top (core, the wings) that import the package root ``uc_datasets`` itself
    (``from uc_datasets import X``, ``import uc_datasets``, ``from .. import X``): the root's lazy exports
    import core and the wings, so that closes a circle the graph, which drops parent packages, cannot show."""
    modules = _modules()
    return {name for name, path in modules.items() if layer_of(name) in {"core", "methods", "evaluation"}
            and "uc_datasets" in imported_names(name, path, modules)}


def test_no_module_below_the_top_imports_the_package_root():
    assert root_importers() == set(), f"import __version__ from uc_datasets._version instead: {root_importers()}"


def test_the_root_import_check_catches_a_planted_one(tmp_path, monkeypatch):
    plant_package(tmp_path, monkeypatch, {
        "core/a.py": "def f():\n    from uc_datasets import __version__\n    return __version__\n",
        "core/b.py": "from .. import registry\n",
        "core/c.py": "from uc_datasets._version import __version__\n",
        "_version.py": "",
    })
    assert root_importers() == {"uc_datasets.core.a", "uc_datasets.core.b"}


def test_persistence_and_the_hub_helpers_sit_below_the_protector_contract():
    """Not even a lazy or a type-checking import: the contract uses them, never the other way round."""
    modules = _modules()
    for name in ("uc_datasets.core.persistence", "uc_datasets.core.protector_hub"):
        names = imported_names(name, modules[name], modules, type_checking=True)
        assert "uc_datasets.core.protector" not in names, name
    graph = import_graph()
    assert {"uc_datasets.core.persistence", "uc_datasets.core.protector_hub"} <= graph["uc_datasets.core.protector"]


def test_the_library_does_not_import_the_benchmarks():
    scripts = {p.stem for p in (PACKAGE.parent / "benchmarks").glob("*.py")} | {"benchmarks"}
    for name, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                tops = {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and not node.level:
                tops = {(node.module or "").split(".")[0]}
            else:
                continue
            assert not tops & scripts, (name, tops & scripts)
