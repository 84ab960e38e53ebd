"""The layers of the package, checked on the source with ``ast`` (DESIGN.md, "Where code lives").

    mcie core (records, shards, storage, metrics, ...)  <-  transforms  <-  pipeline
                                                        <-  annotation, model, bench
    the command line (mcie/cli.py and each folder's cli.py) sits on top of everything

Every import counts, also one inside a function: a lazy import is still a dependency.
"""

import ast
import pathlib

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
}


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
    last = module.rsplit(".", 1)[-1]
    if last == "cli" or last.endswith("_cli"):
        return "cli"
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in {"transforms", "pipeline", "annotation", "model", "bench"}:
        return parts[1]
    return "core"


def imports(module: str, top_level_only: bool = False) -> set[str]:
    """The ``mcie`` modules ``module`` imports (relative imports resolved)."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    nodes = tree.body if top_level_only else ast.walk(tree)
    found = set()
    for node in nodes:
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
    assert layer("mcie.pipeline.real_cli") == "cli" and layer("mcie.shards") == "core"
    assert "mcie.shards" in imports("mcie.annotation.final")


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_imports_a_layer_above_it(module):
    mine = layer(module)
    bad = sorted(m for m in imports(module) if layer(m) != mine and layer(m) not in ALLOWED[mine])
    assert not bad, f"{module} ({mine}) imports {bad}"


def test_no_import_cycles():
    graph = {m: imports(m, top_level_only=True) for m in MODULES}
    # a package's __init__ importing its own modules is how packages load, not a cycle
    for m in graph:
        graph[m] = {d for d in graph[m] if not d.startswith(m + ".")}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(d) :] + [d]))
            if d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_no_command_module_imports_the_main_cli():
    # mcie/cli.py registers every folder's subcommands; they never import it back
    for module in MODULES:
        if layer(module) == "cli" and module != "mcie.cli":
            assert "mcie.cli" not in imports(module), module
