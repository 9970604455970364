"""The package's modules import one another without a circle: every import counts, the lazy ones inside functions
too (a circle that only closes at run time is still a circle), and so does a submodule importing its own package's
__init__ (`from . import X` inside utils/plan/). The configuration never reaches the plan: the plan reads it."""
import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def module_names(root: Path, package: str) -> dict[str, Path]:
    """Dotted name -> file, for every module under `root` (a package's __init__ is the package's name)."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        parts = parts[:-1] if parts[-1] == "__init__" else parts
        out[".".join((package, *parts))] = path
    return out


def _targets(node, here: str, is_package: bool, modules: dict) -> list[str]:
    """The modules of the package that one import statement loads."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        base = here.split(".") if is_package else here.split(".")[:-1]
        base = base[:len(base) - (node.level - 1)]
        source = ".".join(base + ([node.module] if node.module else []))
    else:
        source = node.module or ""
    # `from pkg import name`: the submodule pkg.name where there is one, else pkg itself (its __init__)
    return [f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules else source for alias in node.names]


def import_graph(root: Path, package: str = "utils") -> dict[str, set[str]]:
    """Module -> the package's modules it imports, anywhere in its body; importing a.b.c also runs the __init__ of
    a.b (unless the importer is inside a.b already: then it is running or done)."""
    modules = module_names(root, package)
    graph = {}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            for target in _targets(node, name, is_package, modules):
                while target and target not in modules:  # `import utils.x.y` of a name: its module
                    target = target.rpartition(".")[0]
                parts = target.split(".")
                parents = {".".join(parts[:i]) for i in range(1, len(parts))}
                edges |= {p for p in parents if p in modules and not (name + ".").startswith(p + ".")}
                if target in modules and target != name:
                    edges.add(target)  # the package itself, named: its __init__ counts even from inside it
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One circle of imports (its modules, the first repeated at the end), or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in graph.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def test_the_package_has_no_import_circle():
    graph = import_graph(REPO / "utils")
    assert "utils.plan.costs" in graph and "utils.config" in graph["utils.plan.presets"]  # lazy imports counted
    cycle = find_cycle(graph)
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_the_configuration_never_reaches_the_plan():
    graph = import_graph(REPO / "utils")
    assert not {m for m in reachable(graph, "utils.config") if m.startswith("utils.plan")}, \
        "utils/config.py imports the plan (the run plans a configuration: utils/run.py)"


def test_the_check_sees_a_lazy_circle_and_one_through_a_package_init(tmp_path):
    """The checker itself: a circle closed by an import inside a function, and one through a subpackage's
    __init__ (a submodule importing `from . import name` that the __init__ re-exports)."""
    pkg = tmp_path / "utils"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\n")
    (pkg / "b.py").write_text("def f():\n    from .a import x\n")
    (pkg / "sub" / "__init__.py").write_text("from .one import y\n")
    (pkg / "sub" / "one.py").write_text("from ..a import z\n")
    (pkg / "sub" / "two.py").write_text("from .one import y\n")
    graph = import_graph(pkg)
    assert find_cycle(graph) == ["utils.a", "utils.b", "utils.a"]
    assert graph["utils.sub.one"] == {"utils.a"} and graph["utils.sub.two"] == {"utils.sub.one"}
    (pkg / "b.py").write_text("")
    assert find_cycle(import_graph(pkg)) is None
    (pkg / "sub" / "one.py").write_text("from . import two\ndef g():\n    from . import y\n")
    assert find_cycle(import_graph(pkg)) == ["utils.sub", "utils.sub.one", "utils.sub"]
