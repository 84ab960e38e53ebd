"""The layers of the package, checked on the source with ``ast`` (DESIGN.md, "Where code lives").

    mcie core (records, shards, storage, metrics, ...)  <-  transforms  <-  pipeline
                                                        <-  annotation, model, bench
    the command line (mcie/cli.py and each folder's cli.py) sits on top of everything,
    the Python API (mcie/api.py, re-exported lazily by the package root) on top of that

Every import counts, also one inside a function: a lazy import is still a dependency.
"""

import ast
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
#: folder at the repository root -> its package under the one ``mcie`` namespace
FOLDERS = {
    "mcie": "mcie",
    "transforms": "mcie.transforms",
    "pipeline": "mcie.pipeline",
    "annotation": "mcie.annotation",
    "model": "mcie.model",
    "bench": "mcie.bench",
}
#: layer -> the layers it may import (besides itself)
ALLOWED = {
    "core": set(),
    "transforms": {"core"},
    "pipeline": {"core", "transforms"},
    "annotation": {"core"},
    "model": {"core", "transforms"},
    "bench": {"core", "transforms", "model"},
    "cli": {"core", "transforms", "pipeline", "annotation", "model", "bench"},
    "api": {"core", "transforms", "pipeline", "annotation", "model", "bench", "cli"},
}
#: the package root re-exports the API, loaded on first use (``mcie.__getattr__``)
ROOT_REEXPORTS = {"mcie.api"}


def _modules() -> dict[str, pathlib.Path]:
    out = {}
    for folder, package in FOLDERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            out[".".join([package, *parts])] = path
    return out


MODULES = _modules()


def layer(module: str) -> str:
    if module == "mcie.api":  # the Python API: the command line's jobs as functions
        return "api"
    last = module.rsplit(".", 1)[-1]
    if last == "cli" or last.endswith("_cli"):
        return "cli"
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in {"transforms", "pipeline", "annotation", "model", "bench"}:
        return parts[1]
    return "core"


def imports(module: str) -> set[str]:
    """The ``mcie`` modules ``module`` imports, anywhere in its source (a function's lazy
    import too), relative imports resolved."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            names = [f"{base}.{a.name}" for a in node.names] + [base]
        else:
            continue
        for name in names:
            while name and name not in MODULES:  # "mcie.shards.read_tar" -> "mcie.shards"
                name = name.rpartition(".")[0]
            if name and name != module and name.startswith("mcie"):
                found.add(name)
    return found


def test_the_module_map_sees_the_package():
    assert {"mcie.records", "mcie.shards", "mcie.transforms.synthetic.edits.swap", "mcie.cli"} <= set(MODULES)
    assert (
        layer("mcie.pipeline.cli") == "cli"
        and layer("mcie.inspect_cli") == "cli"
        and layer("mcie.shards") == "core"
    )
    assert "mcie.shards" in imports("mcie.annotation.final")


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_imports_a_layer_above_it(module):
    mine = layer(module)
    bad = sorted(m for m in imports(module) if layer(m) != mine and layer(m) not in ALLOWED[mine])
    if module == "mcie":
        bad = [m for m in bad if m not in ROOT_REEXPORTS]
    assert not bad, f"{module} ({mine}) imports {bad}"


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of ``graph`` (module -> the modules it imports) as a path, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                return stack[stack.index(d) :] + [d]
            if d not in state and (found := visit(d)):
                return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_the_cycle_check_sees_a_lazy_import(tmp_path, monkeypatch):
    # a module whose only import of the other is inside a function still closes a cycle
    (tmp_path / "a.py").write_text("import mcie.b\n")
    (tmp_path / "b.py").write_text("def f():\n    import mcie.a\n")
    monkeypatch.setitem(MODULES, "mcie.a", tmp_path / "a.py")
    monkeypatch.setitem(MODULES, "mcie.b", tmp_path / "b.py")
    assert imports("mcie.b") == {"mcie.a"}
    assert find_cycle({"mcie.a": imports("mcie.a"), "mcie.b": imports("mcie.b")}) == [
        "mcie.a",
        "mcie.b",
        "mcie.a",
    ]


def test_no_import_cycles():
    graph = {m: imports(m) for m in MODULES}
    # a package's __init__ importing its own modules is how packages load, not a cycle
    for m in graph:
        graph[m] = {d for d in graph[m] if not d.startswith(m + ".")}
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_no_command_module_imports_the_main_cli():
    # mcie/cli.py registers every folder's subcommands; they never import it back
    for module in MODULES:
        if layer(module) == "cli" and module != "mcie.cli":
            assert "mcie.cli" not in imports(module), module


#: a build folder's file names spelled in code (``f"mcie-{unit:06d}"``, ``"run.json"``); a name
#: between double backticks in a docstring is documentation, not a spelling
_BUILD_NAMES = re.compile(r"""(?<!``)(?:mcie|truth|index|part)-\{[^}]*:06d\}|["']run\.json["']""")


def test_build_folder_names_are_spelled_once():
    # every path inside a build folder comes from mcie.layout (DESIGN.md, "One pipeline")
    spelled = {m: _BUILD_NAMES.findall(p.read_text()) for m, p in MODULES.items()}
    assert len(spelled["mcie.layout"]) >= 2
    assert {m: found for m, found in spelled.items() if found and m != "mcie.layout"} == {}
