"""The dependency rules of the package, checked by tools and by a few AST walks.

* the layers, the independent siblings and "nothing below the facade imports it": the
  contracts in pyproject.toml's ``[tool.importlinter]``, run by ``lint-imports``;
* the types: ``mypy`` on ``src/disgorge`` (strict on the service modules), with the
  settings in ``[tool.mypy]``;
* no private names (``_name``) across packages, in ``src/disgorge`` and ``benchmarks/``:
  import-linter sees modules, not names, so this file walks the code;
* no module over 600 lines (the migrations aside);
* ``errors.py``'s docstring draws the whole exception tree.

docs/architecture.md draws the layers.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from disgorge import errors as errors_module

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "disgorge"
BENCHMARKS = ROOT / "benchmarks"
BIN = Path(sys.executable).parent
MAX_LINES = 600
#: underscore names that are public API (namedtuple's, SQLAlchemy Row's)
PUBLIC_UNDERSCORE = {"_asdict", "_replace", "_fields", "_make", "_field_defaults", "_mapping", "_tuple"}


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)


def test_import_contracts_hold() -> None:
    proc = _run([str(BIN / "lint-imports"), "--no-cache"])
    assert proc.returncode == 0, f"lint-imports failed:\n{proc.stdout}\n{proc.stderr}"


def test_mypy_passes() -> None:
    proc = _run([sys.executable, "-m", "mypy"])  # files and flags: [tool.mypy] in pyproject.toml
    assert proc.returncode == 0, f"mypy failed:\n{proc.stdout}\n{proc.stderr}"


# -- modules ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Module:
    name: str  # dotted; benchmarks' scripts are "benchmarks.<stem>"
    path: Path
    is_package: bool

    @property
    def package(self) -> str:
        return self.name if self.is_package else self.name.rpartition(".")[0]


def _modules(folder: Path, prefix: str) -> Iterator[Module]:
    for path in sorted(folder.rglob("*.py")):
        rel = path.relative_to(folder).with_suffix("")
        parts = [prefix, *rel.parts]
        if parts[-1] == "__init__":
            yield Module(".".join(parts[:-1]), path, True)
        else:
            yield Module(".".join(parts), path, False)


SRC_MODULES = [m for m in _modules(SRC, "disgorge") if ".migrations." not in m.name + "."]
BENCH_MODULES = list(_modules(BENCHMARKS, "benchmarks")) if BENCHMARKS.is_dir() else []
KNOWN = {m.name: m for m in SRC_MODULES}


def _private(part: str) -> bool:
    return (
        part.startswith("_") and not part.startswith("__") and part != "_" and part not in PUBLIC_UNDERSCORE
    )


def _owner_package(path: list[str], i: int) -> str:
    """The package that owns the private ``path[i]``: that of the deepest module before it
    (``disgorge.cli`` for ``disgorge.cli._common``, ``disgorge`` for ``disgorge.workspace._when``
    and for ``disgorge._time``)."""
    for j in range(i, 0, -1):
        found = KNOWN.get(".".join(path[:j]))
        if found is not None:
            return found.package
    return path[0]


def _misuse(module: Module, dotted: str) -> str | None:
    """Why ``module`` may not use ``dotted`` (``disgorge.x._y``...), or None if it may."""
    path = dotted.split(".")
    if path[0] != "disgorge":
        return None  # another library's private names are its business, not this check's
    for i, part in enumerate(path):
        if not _private(part):
            continue
        owner = _owner_package(path, i)
        if owner == module.package:
            continue
        # disgorge._time, ._canonical, ._merkle...: package-wide helpers, for src only
        if owner == "disgorge" and i == 1 and module.name.startswith("disgorge"):
            continue
        return f"{'.'.join(path[: i + 1])} is private to {owner}"
    return None


def _resolve(module: Module, level: int, target: str | None) -> str:
    if not level:
        return target or ""
    base = module.package.split(".")
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, *([target] if target else [])])


def _definitions() -> dict[str, set[str]]:
    """private name -> the packages whose modules define it as an attribute: a function, a
    class, a module or class variable, or ``self._x = ...``."""
    out: dict[str, set[str]] = {}

    def add(name: str, module: Module) -> None:
        if _private(name):
            out.setdefault(name, set()).add(module.package)

    for module in [*SRC_MODULES, *BENCH_MODULES]:
        tree = ast.parse(module.path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                add(node.name, module)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                add(node.attr, module)
            if isinstance(node, ast.Module | ast.ClassDef):  # their variables are attributes
                for stmt in node.body:
                    targets = (
                        stmt.targets
                        if isinstance(stmt, ast.Assign)
                        else [stmt.target]
                        if isinstance(stmt, ast.AnnAssign)
                        else []
                    )
                    for target in targets:
                        for name in ast.walk(target):
                            if isinstance(name, ast.Name):
                                add(name.id, module)
    return out


DEFINED = _definitions()


def _violations(module: Module) -> Iterator[str]:
    tree = ast.parse(module.path.read_text(encoding="utf-8"))
    aliases: dict[str, str] = {}  # local name -> dotted path it was imported as
    where = f"{module.path.relative_to(ROOT)}"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                top = a.name.partition(".")[0]
                aliases[a.asname or top] = a.name if a.asname else top
                if (why := _misuse(module, a.name)) is not None:
                    yield f"{where}:{node.lineno}: import {a.name}: {why}"
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, node.level, node.module)
            for a in node.names:
                dotted = f"{base}.{a.name}"
                aliases[a.asname or a.name] = dotted
                if (why := _misuse(module, dotted)) is not None:
                    yield f"{where}:{node.lineno}: from {base} import {a.name}: {why}"
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            chain: list[str] = [node.attr]
            root: ast.expr = node.value
            while isinstance(root, ast.Attribute):
                chain.append(root.attr)
                root = root.value
            if isinstance(root, ast.Name) and root.id in aliases:
                dotted = ".".join([aliases[root.id], *reversed(chain)])
                if (why := _misuse(module, dotted)) is not None:
                    yield f"{where}:{node.lineno}: {dotted}: {why}"
                continue
            if isinstance(root, ast.Name) and root.id in ("self", "cls"):
                continue
            if isinstance(root, ast.Call) and isinstance(root.func, ast.Name) and root.func.id == "super":
                continue
            # an object's attribute (``ws._start_run``): private to the packages defining it
            owners = DEFINED.get(node.attr, set())
            if owners and module.package not in owners:
                yield f"{where}:{node.lineno}: .{node.attr} is private to {', '.join(sorted(owners))}"
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            for arg in node.args:
                if not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
                    continue
                text = arg.value
                if text.startswith("disgorge.") and (why := _misuse(module, text)) is not None:
                    yield f"{where}:{node.lineno}: {name}({text!r}): {why}"
                elif name in ("getattr", "setattr", "hasattr", "delattr", "object") and _private(text):
                    owners = DEFINED.get(text, set())
                    if owners and module.package not in owners:
                        private_to = ", ".join(sorted(owners))
                        yield f"{where}:{node.lineno}: {name}(..., {text!r}) is private to {private_to}"


def test_no_private_names_across_packages() -> None:
    found = [v for m in [*SRC_MODULES, *BENCH_MODULES] for v in _violations(m)]
    assert not found, "private names used across packages:\n" + "\n".join(found)


def test_the_private_name_check_sees_what_it_must() -> None:
    """The walk above is only worth something if it finds the misuses it is written for."""
    probe = Module("disgorge.sharing.probe", SRC / "sharing" / "probe.py", False)
    assert _misuse(probe, "disgorge.workspace.Workspace._asset") is not None
    assert _misuse(probe, "disgorge.erasure.engine._step_blobs") is not None
    assert _misuse(probe, "disgorge.sharing.documents._canonical_body") is None  # its own package
    assert _misuse(probe, "disgorge._time.iso") is None  # a package-wide helper, inside src
    bench = Module("benchmarks.erasure", BENCHMARKS / "erasure.py", False)
    assert _misuse(bench, "disgorge._time.iso") is not None
    assert _misuse(bench, "benchmarks._harness.machine") is None


# -- size ---------------------------------------------------------------------------------


def test_no_module_over_600_lines() -> None:
    sizes = {m.path: len(m.path.read_text(encoding="utf-8").splitlines()) for m in SRC_MODULES}
    big = [f"{p.relative_to(ROOT)}: {n} lines" for p, n in sorted(sizes.items()) if n > MAX_LINES]
    assert not big, f"modules over {MAX_LINES} lines (split them by job):\n" + "\n".join(big)


# -- contracts cover the package ------------------------------------------------------------


def test_every_module_has_a_layer() -> None:
    """A new module must be placed in the layers, not slip past them unchecked.

    A package placed module by module (a layer names its modules, not it) cannot place its
    ``__init__`` too, as a layer holds the modules below it: such an ``__init__`` only
    re-exports, and imports of it go unchecked."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    (layers,) = [c for c in config["tool"]["importlinter"]["contracts"] if c.get("id") == "layers"]
    named = {name.strip() for line in layers["layers"] for name in line.replace("|", ":").split(":")}

    def placed(name: str) -> bool:
        return any(name == n or name.startswith(n + ".") for n in named)

    split = {n.rpartition(".")[0] for n in named}
    unplaced = [m.name for m in SRC_MODULES if not placed(m.name) and not (m.is_package and m.name in split)]
    assert not unplaced, "modules in no layer of [tool.importlinter]:\n" + "\n".join(unplaced)


# -- errors ---------------------------------------------------------------------------------


def test_errors_docstring_draws_the_whole_tree() -> None:
    """Every subclass of DisgorgeError in src/, wherever it is defined, is in the drawing."""
    bases: dict[str, set[str]] = {}
    for module in SRC_MODULES:
        for node in ast.walk(ast.parse(module.path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                names = {b.id if isinstance(b, ast.Name) else getattr(b, "attr", "") for b in node.bases}
                bases[node.name] = bases.get(node.name, set()) | names
    errors = {"DisgorgeError"}
    while grown := {c for c, bs in bases.items() if bs & errors} - errors:
        errors |= grown
    doc = errors_module.__doc__ or ""
    drawn = {line.split("──", 1)[1].split()[0] for line in doc.splitlines() if "──" in line}
    assert errors - {"DisgorgeError"} <= drawn, (
        f"errors.py's tree lacks {sorted(errors - drawn - {'DisgorgeError'})}"
    )
    assert drawn <= errors, f"errors.py's tree names classes that do not exist: {sorted(drawn - errors)}"
