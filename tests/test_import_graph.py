"""The shape of pyrt's Python code: every import in pyrt/ (at the top of a module or
inside a function) points down, and no two modules import each other, however
indirectly. Read from the installed package's sources with ast; nothing is imported."""
import ast
import os

import pytest

import pyrt

PKG_DIR = os.path.dirname(pyrt.__file__)

# The layers, top first: a module may import modules of its own layer (no cycles)
# and of the layers below it, never above. `pyrt` is the package itself: its
# names (pyrt.run, pyrt.Pool, ...) are loaded on first use from the modules its
# _LAZY table names.
LAYERS = [
    ("pyrt", "pyrt.cli", "pyrt.api"),          # the command line and the Python API
    ("pyrt.runtime", "pyrt.ocirt"),            # Runtime(root); pyrt-runtime's operations
    ("pyrt.pool",),                            # the warm pool, metering, bench
    ("pyrt.containers", "pyrt.dockerfile"),    # containers; build (runs containers)
    ("pyrt.network",),                         # networks: CNI wiring, addresses, firewall, names
    ("pyrt.images", "pyrt.registry"),          # the catalog and its ingest path; pull and push
    ("pyrt.store",),                           # blobs, SQLite, snapshots, unpack, commit
    ("pyrt.launch",),                          # the spawn spec, run/spawn/Process, mounts, tty
    ("pyrt.cgroups",),                         # limits, layout, the cgroup handle
    ("pyrt.oci",),                             # pure OCI types
    ("pyrt.filters", "pyrt.hostpython", "pyrt.compression", "pyrt.errors", "pyrt.paths", "pyrt.sys", "pyrt._core", "pyrt._sys",
     "pyrt._sys_build"),                       # leaves and the bindings
]

# Compiled modules: imported, never read.
BINDINGS = ("pyrt._core", "pyrt._sys")

# Imports on their way out, left out of the checks below; each must still be there
# (remove it here once it is gone).
PENDING = {}


def _modules() -> dict:
    """{dotted name: path} of every .py file of the package."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(PKG_DIR):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        for name in filenames:
            if not name.endswith(".py"):
                continue
            rel = os.path.relpath(os.path.join(dirpath, name), os.path.dirname(PKG_DIR))[:-3]
            dotted = rel.replace(os.sep, ".")
            if dotted.endswith(".__init__"):
                dotted = dotted[:-len(".__init__")]
            out[dotted] = os.path.join(dirpath, name)
    return out


MODULES = _modules()
KNOWN = set(MODULES) | set(BINDINGS)


def _lazy_table(path) -> dict:
    """The package's {name: module} table of names loaded on first use."""
    for node in ast.parse(open(path).read()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "_LAZY" for t in node.targets):
            return ast.literal_eval(node.value)
    return {}


LAZY = _lazy_table(MODULES["pyrt"])


def _owner(name: str) -> str | None:
    """The module a dotted name is (or is in): pyrt.x.y.Name -> pyrt.x.y."""
    while name:
        if name in KNOWN:
            return name
        name = name.rpartition(".")[0]
    return None


def _imports(module: str, path: str) -> list:
    """[(imported module, line)] of every pyrt import of a module, in functions too."""
    is_pkg = os.path.basename(path) == "__init__.py"
    package = module if is_pkg else module.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(open(path).read(), path)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "pyrt" or alias.name.startswith("pyrt."):
                    out.append((_owner(alias.name), node.lineno))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                base = ".".join(parts + ([base] if base else []))
            if base != "pyrt" and not base.startswith("pyrt."):
                continue
            for alias in node.names:
                full = f"{base}.{alias.name}"
                if full in KNOWN:                       # a module: from pyrt import _core
                    out.append((full, node.lineno))
                elif base == "pyrt" and alias.name in LAZY:  # a lazy name: where it lives
                    out.append((LAZY[alias.name], node.lineno))
                elif base == "pyrt":                    # the package's own constants (__version__)
                    continue
                else:
                    out.append((_owner(base), node.lineno))
    return [(m, line) for m, line in out if m is not None and m != module]


def _graph() -> dict:
    graph = {m: {} for m in KNOWN}
    for module, path in MODULES.items():
        for target, line in _imports(module, path):
            graph[module].setdefault(target, []).append(line)
    for name, target in LAZY.items():  # `import pyrt; pyrt.run(...)` loads these
        graph["pyrt"].setdefault(target, []).append(0)
    return graph


FULL_GRAPH = _graph()
GRAPH = {m: {t: lines for t, lines in targets.items() if (m, t) not in PENDING} for m, targets in FULL_GRAPH.items()}


def _layer(module: str) -> int:
    best, found = -1, None
    for i, layer in enumerate(LAYERS):
        for prefix in layer:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, found = len(prefix), i
    return found


def _cycles(graph) -> list:
    """The strongly connected components with more than one module (Tarjan's)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        work = [(v, iter(sorted(graph[v])))]
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        while work:
            node, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                    break
                if w in on_stack:
                    low[node] = min(low[node], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.append(w)
                        if w == node:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _where(module, target):
    lines = [str(n) for n in GRAPH[module][target] if n]
    return f"{module} -> {target}" + (f" (line {', '.join(lines)})" if lines else " (its _LAZY table)")


def test_the_graph_is_read():
    assert "pyrt.launch.process" in GRAPH["pyrt.api"]
    assert "pyrt._core" in GRAPH["pyrt.launch.process"]  # `from pyrt import _core`
    assert len(MODULES) > 50


@pytest.mark.parametrize("edge", sorted(PENDING))
def test_pending_imports_are_still_there(edge):
    module, target = edge
    assert target in FULL_GRAPH[module], f"{module} no longer imports {target}: remove it from PENDING"


def test_every_module_has_a_layer():
    assert [m for m in sorted(KNOWN) if _layer(m) is None] == []


def test_no_import_cycles():
    cycles = _cycles(GRAPH)
    described = []
    for comp in cycles:
        described.append("; ".join(_where(a, b) for a in comp for b in sorted(GRAPH[a]) if b in comp))
    assert cycles == [], "import cycles:\n" + "\n".join(described)


def test_imports_point_down():
    upward = [_where(m, t) + f": layer {_layer(m)} imports layer {_layer(t)}"
              for m in sorted(GRAPH) for t in sorted(GRAPH[m]) if _layer(t) < _layer(m)]
    assert upward == [], "imports that point up:\n" + "\n".join(upward)


@pytest.mark.parametrize("module", ["pyrt.cli.main", "pyrt.cli.oci_runtime"])
def test_nothing_imports_the_command_line(module):
    users = [m for m in sorted(GRAPH) if module in GRAPH[m] and not m.startswith("pyrt.cli")]
    assert users == []


def test_only_the_command_line_imports_the_oci_runtime():
    users = [_where(m, t) for m in sorted(GRAPH) for t in GRAPH[m]
             if t.startswith("pyrt.ocirt") and not m.startswith(("pyrt.ocirt", "pyrt.cli"))]
    assert users == []
