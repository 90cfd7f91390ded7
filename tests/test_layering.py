"""The import graph keeps its layers (import-linter's job, done with ``ast``: it is not installable here).

Every module of the package is parsed; every import counts, those inside functions and
``TYPE_CHECKING`` blocks too. Relative imports are resolved, and ``from PKG import name`` is an
import of the module ``PKG.name`` when there is one, else of ``PKG`` itself (its ``__init__``).
The rules:

- a module imports only its own layer or lower (``LAYERS``, lowest first);
- no module imports the ``__init__`` of its own package or of a package above it (the version
  comes from ``_version``); a ``__main__`` module is exempt: ``python -m`` imports its package first;
- the output side and the input side do not import each other, and clients import neither the
  engine's model resolution and GPU checks nor the run (``FORBIDDEN``).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import vllm_extract

PACKAGE = "vllm_extract"
LAYERS = {
    "_version": 0,
    "exceptions": 0,
    "config": 0,
    "events": 0,
    "readers": 1,
    "output": 1,
    "extract": 2,
    "engine": 3,
    "clients": 4,
    "run": 5,
    "eval": 2,  # scoring and gold files: below the run, whose --examples read gold
    "review": 6,
    "cli": 7,
}
# importer (a package below vllm_extract) -> what it must not import, beyond the layer order
FORBIDDEN = {
    "output": ("readers", "extract", "run"),
    "readers": ("output",),
    "clients": ("engine.models", "engine.gpu", "run"),
}
TOP_LEVEL = {"__init__.py", "_version.py", "exceptions.py", "config.py", "events.py", "py.typed"}


@dataclass(frozen=True)
class Import:
    importer: str
    target: str
    path: Path
    line: int


def _modules(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` file of the package under ``root``."""
    found = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> list[Import]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - (node.level - 1)] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        for target in dict.fromkeys(targets):  # once per statement and module
            if target == PACKAGE or target.startswith(PACKAGE + "."):
                found.append(Import(name, target, path, node.lineno))
    return found


def _below_top(name: str) -> str:
    return name.removeprefix(PACKAGE + ".") if name != PACKAGE else ""


def violations(root: Path) -> list[str]:
    """Every broken rule, as ``path:line: importer imports target: why``."""
    modules = _modules(root)
    problems = []
    for name, path in modules.items():
        inner = _below_top(name)
        for imp in _imports(name, path, modules):
            where = f"{path.relative_to(root)}:{imp.line}: {name} imports {imp.target}"
            target = _below_top(imp.target)
            if name == PACKAGE or path.name == "__main__.py":
                continue  # the public API imports from every layer; see the module docstring for __main__
            if not target:
                problems.append(f"{where}: the package's front file (import the module that defines it)")
                continue
            if imp.target in _ancestors(name) or (imp.target == name and path.name != "__init__.py"):
                problems.append(f"{where}: the __init__ of its own package (import the module that defines it)")
                continue
            mine, theirs = LAYERS.get(inner.split(".")[0]), LAYERS.get(target.split(".")[0])
            if mine is None or theirs is None:
                unknown = inner if mine is None else target
                problems.append(f"{where}: {unknown.split('.')[0]!r} has no layer (add it to LAYERS)")
            elif theirs > mine:
                problems.append(f"{where}: layer {theirs} is above layer {mine}")
            for importer, banned in FORBIDDEN.items():
                if _within(inner, importer) and any(_within(target, b) for b in banned):
                    problems.append(f"{where}: {importer} must not import {', '.join(banned)}")
    return problems


def _ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(len(parts) - 1, 0, -1)]


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


# --- the package -----------------------------------------------------------------------------------


def test_the_package_keeps_its_layers() -> None:
    root = Path(vllm_extract.__file__).parent.parent
    assert violations(root) == []


def test_only_the_leaf_layer_and_the_public_api_sit_at_the_top() -> None:
    top = Path(vllm_extract.__file__).parent
    files = {p.name for p in top.iterdir() if p.is_file() and p.suffix in (".py", ".typed")}
    assert files == TOP_LEVEL
    folders = {p.name for p in top.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert folders <= set(LAYERS), folders - set(LAYERS)


# --- the checker itself, on a small package that breaks every rule ----------------------------------


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / PACKAGE / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def test_the_checker_names_each_broken_rule(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "__init__.py": "from .run.plan import resolve\n__version__ = '0'\n",
            "_version.py": "__version__ = '0'\n",
            "readers/__init__.py": "",
            "readers/text.py": "from ..output.records import Record\n",
            "output/__init__.py": "from .merge import merge\n",
            "output/merge.py": (
                "from . import records\n"  # a sibling module: fine
                "from .. import __version__\n"  # the package's front file
                "from ..output import OutputWriter\n"  # its own package's __init__
                "def merge():\n    from ..readers import text\n"  # the input side, inside a function
            ),
            "output/records.py": "from .._version import __version__\nRecord = 1\n",
            "clients/__init__.py": "",
            "clients/ray.py": (
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n    from ..run.plan import RunPlan\n"  # upward, even for types
                "from ..engine import models\n"  # below, but not for clients
            ),
            "engine/__init__.py": "",
            "engine/models.py": "",
            "run/__init__.py": "",
            "run/plan.py": "from ..clients import ray\nresolve = 1\n",
            "cli/__init__.py": "def main(): pass\n",
            "cli/__main__.py": "from . import main\n",  # exempt: python -m imports the package first
            "newstage/__init__.py": "",
        },
    )
    found = "\n".join(violations(tmp_path))
    expected = [
        "vllm_extract.readers.text imports vllm_extract.output.records: readers must not import output",
        "vllm_extract.output.merge imports vllm_extract: the package's front file",
        "vllm_extract.output.merge imports vllm_extract.output: the __init__ of its own package",
        "vllm_extract.output.merge imports vllm_extract.readers.text: output must not import readers",
        "vllm_extract.clients.ray imports vllm_extract.run.plan: layer 5 is above layer 4",
        "vllm_extract.clients.ray imports vllm_extract.engine.models: clients must not import",
        "vllm_extract/output/merge.py:5:",
    ]
    for message in expected:
        assert message in found, f"{message!r} not in:\n{found}"
    assert "records imports" not in found and "run.plan imports" not in found and "cli.__main__" not in found
    assert "output.merge imports vllm_extract.output.records" not in found
    assert len(violations(tmp_path)) == 7


def test_the_checker_knows_every_top_level_name(tmp_path: Path) -> None:
    _write(tmp_path, {"__init__.py": "", "stage/__init__.py": "", "stage/a.py": "from ..config import X\n"})
    assert violations(tmp_path) == [
        "vllm_extract/stage/a.py:1: vllm_extract.stage.a imports vllm_extract.config: 'stage' has no layer "
        "(add it to LAYERS)"
    ]
