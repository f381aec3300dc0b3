"""The import graph is the data flow: no gpt2lab module imports one that imports it back.

The graph is read from the source with ``ast``: every ``from .x import y``, ``from gpt2lab.x
import y`` and ``import gpt2lab.x``, at module level and inside functions and methods, with
relative imports and packages resolved. Imports under ``if TYPE_CHECKING:`` are left out: they
only name types for annotations and never run, so they cannot tie two modules together.

A few imports may point upward, and only those listed in ``ALLOWED``: the ``GPT2`` convenience
methods (``model.generate(...)`` is ``generate(model, ...)``, as nanoGPT's ``from_pretrained``
reaches up to its loader) and ``_repr_html_``, which draws an object with gpt2lab.viz.html.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "gpt2lab"

# GPT2 methods that only call the function of the same name in a module above the model.
CONVENIENCE_METHODS = {
    "generate": "gpt2lab.generate",
    "generate_text": "gpt2lab.generate",
    "run_with_cache": "gpt2lab.trace",
    "run_with_hooks": "gpt2lab.trace",
    "run_to": "gpt2lab.trace",
    "save": "gpt2lab.weights",
    "to_tokens": "gpt2lab.prompts",
    "to_string": "gpt2lab.prompts",
}
ALLOWED = {("gpt2lab.model", f"GPT2.{m}", target) for m, target in CONVENIENCE_METHODS.items()}
ALLOWED |= {
    # Jupyter's rich display: each object is drawn by the HTML module above it.
    ("gpt2lab.tracing", "Trace._repr_html_", "gpt2lab.viz.html"),
    ("gpt2lab.lens", "LogitLens._repr_html_", "gpt2lab.viz.html"),
    ("gpt2lab.inspection", "Inspection._repr_html_", "gpt2lab.viz.html"),
    # Its JSON form, for `gpt2lab inspect --json`, is drawn by the JSON view above it.
    ("gpt2lab.inspection", "Inspection.to_dict", "gpt2lab.viz.web_json"),
}


@dataclass(frozen=True)
class Import:
    """One import of a package module: who imports what, from where (``scope``: the enclosing
    class and function, "" at module level) and on which line."""

    importer: str
    imported: str
    scope: str
    line: int

    def key(self) -> tuple[str, str, str]:
        return (self.importer, self.scope, self.imported)

    def __str__(self) -> str:
        where = f" in {self.scope}" if self.scope else ""
        return f"{self.importer}:{self.line}{where} imports {self.imported}"


def module_names(package: Path) -> dict[str, Path]:
    """Every module of the package by dotted name (a package is named by its __init__.py)."""
    names = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


class _Collector(ast.NodeVisitor):
    """Collects the package imports of one module, with the scope each one sits in."""

    def __init__(self, module: str, is_package: bool, modules: set[str]) -> None:
        self.module = module
        self.here = module if is_package else module.rpartition(".")[0]
        self.modules = modules
        self.scope: list[str] = []
        self.found: list[Import] = []

    def _scoped(self, node: ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.scope.append(node.name)
        self.generic_visit(node)
        self.scope.pop()

    visit_ClassDef = visit_FunctionDef = visit_AsyncFunctionDef = _scoped

    def visit_If(self, node: ast.If) -> None:
        if not _is_type_checking(node.test):
            self.visit(node.test)
            for child in node.body:
                self.visit(child)
        for child in node.orelse:
            self.visit(child)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name, node.lineno)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            base = self.here.split(".")
            base = base[: len(base) - (node.level - 1)]
            source = ".".join(base + ([node.module] if node.module else []))
        else:
            source = node.module or ""
        for alias in node.names:
            submodule = f"{source}.{alias.name}"
            self._add(submodule if submodule in self.modules else source, node.lineno)

    def _add(self, name: str, line: int) -> None:
        """Record the import of ``name``, or of the nearest package module that holds it."""
        while name and name not in self.modules:
            name = name.rpartition(".")[0]
        if name and name != self.module:
            self.found.append(Import(self.module, name, ".".join(self.scope), line))


def collect_imports(package: Path) -> list[Import]:
    """All imports between the package's modules, in file and line order."""
    modules = module_names(package)
    found = []
    for name, path in modules.items():
        collector = _Collector(name, path.name == "__init__.py", set(modules))
        collector.visit(ast.parse(path.read_text(encoding="utf-8"), str(path)))
        found += collector.found
    return found


def _packages_run_by(imp: Import) -> list[str]:
    """Importing a.b.c runs a/__init__ and a/b/__init__ first: the packages above the imported
    module that are not already above the importer (and so already running)."""
    parts = imp.imported.split(".")
    above = [".".join(parts[:i]) for i in range(2, len(parts))]
    return [p for p in above if not (imp.importer + ".").startswith(p + ".")]


def find_cycle(imports: list[Import]) -> list[Import]:
    """The imports that form one cycle (each imports the next, the last the first), or []."""
    edges: dict[str, list[Import]] = {}
    for imp in imports:
        for target in [imp.imported, *_packages_run_by(imp)]:
            edge = Import(imp.importer, target, imp.scope, imp.line)
            edges.setdefault(imp.importer, []).append(edge)
    done: set[str] = set()
    path: list[Import] = []
    on_path: dict[str, int] = {}

    def visit(module: str) -> list[Import]:
        on_path[module] = len(path)
        for edge in edges.get(module, []):
            if edge.imported in on_path:
                return [*path[on_path[edge.imported] :], edge]
            if edge.imported not in done:
                path.append(edge)
                cycle = visit(edge.imported)
                if cycle:
                    return cycle
                path.pop()
        del on_path[module]
        done.add(module)
        return []

    for module in sorted(edges):
        if module not in done:
            cycle = visit(module)
            if cycle:
                return cycle
    return []


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    return root / "pkg"


# --- the package ------------------------------------------------------------------------------
def test_no_import_cycle_among_the_modules():
    imports = [i for i in collect_imports(PACKAGE) if i.key() not in ALLOWED]
    cycle = find_cycle(imports)
    assert not cycle, "import cycle:\n  " + "\n  ".join(map(str, cycle))


def test_every_allowed_upward_import_is_still_there():
    """An allowance whose import is gone must go too, so the list stays as short as the need."""
    present = {i.key() for i in collect_imports(PACKAGE)}
    assert sorted(ALLOWED - present) == []


def test_the_core_imports_only_what_lies_below_it():
    """model and fast, the forward pass, import nothing above them outside the allowances."""
    below = {"gpt2lab.config", "gpt2lab.errors", "gpt2lab.fast", "gpt2lab.hooks"}
    below |= {"gpt2lab.kv_cache", "gpt2lab.loss", "gpt2lab.quantize"}
    for imp in collect_imports(PACKAGE):
        if imp.importer in ("gpt2lab.model", "gpt2lab.fast") and imp.key() not in ALLOWED:
            assert imp.imported in below, str(imp)


# --- the checker itself -----------------------------------------------------------------------
def test_the_checker_resolves_relative_absolute_and_package_imports(tmp_path):
    package = _write(
        tmp_path,
        {
            "pkg/__init__.py": "from .a import f\n",
            "pkg/a.py": "from . import b\nimport pkg.sub.c\n\ndef f():\n    from .sub import d\n",
            "pkg/b.py": "",
            "pkg/sub/__init__.py": "",
            "pkg/sub/c.py": "from ..b import x\nfrom pkg.sub import d as dd\n",
            "pkg/sub/d.py": "import typing\nif typing.TYPE_CHECKING:\n    from ..a import f\n",
        },
    )
    found = {(i.importer, i.imported, i.scope) for i in collect_imports(package)}
    assert found == {
        ("pkg", "pkg.a", ""),
        ("pkg.a", "pkg.b", ""),
        ("pkg.a", "pkg.sub.c", ""),
        ("pkg.a", "pkg.sub.d", "f"),
        ("pkg.sub.c", "pkg.b", ""),
        ("pkg.sub.c", "pkg.sub.d", ""),
    }
    assert find_cycle(collect_imports(package)) == []


@pytest.mark.parametrize(
    "c_source",
    [
        "from ..a import f\n",  # module level
        "def g():\n    from ..a import f\n",  # inside a function
        "class K:\n    def m(self):\n        import pkg.a\n",  # in a method, absolute
    ],
)
def test_the_checker_finds_a_cycle_and_names_its_imports(tmp_path, c_source):
    package = _write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/a.py": "from .sub.c import g\n",
            "pkg/sub/__init__.py": "",
            "pkg/sub/c.py": c_source,
        },
    )
    cycle = find_cycle(collect_imports(package))
    assert [(i.importer, i.imported) for i in cycle] == [
        ("pkg.a", "pkg.sub.c"),
        ("pkg.sub.c", "pkg.a"),
    ]
    assert str(cycle[0]) == "pkg.a:1 imports pkg.sub.c"


def test_the_checker_counts_the_packages_an_import_runs(tmp_path):
    """``from .sub.c import g`` runs sub/__init__.py too, so an import there closes a cycle."""
    package = _write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/a.py": "from .sub.c import g\n",
            "pkg/sub/__init__.py": "from ..a import h\n",
            "pkg/sub/c.py": "",
        },
    )
    cycle = find_cycle(collect_imports(package))
    assert [(i.importer, i.imported) for i in cycle] == [("pkg.a", "pkg.sub"), ("pkg.sub", "pkg.a")]
