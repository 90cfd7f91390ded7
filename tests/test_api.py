"""The public surface: `__all__` is complete and sorted, documented names import, heavy engines
are imported lazily, and the exception tree has one root."""

from __future__ import annotations

import subprocess
import sys

import vllm_extract
from vllm_extract import exceptions

DOCUMENTED = [
    "DirectVLLMClient",
    "HTTPVLLMClient",
    "VLLMClientFactory",
    "VLLMConfig",
    "VLLMRequest",
    "VLLMResponse",
    "TokenEstimator",
    "ContextOverflowError",
    "GPUMonitor",
    "VLLMClientError",
    "ModelNotLoadedError",
    "GenerationError",
    "GPUMemoryError",
    "ConnectionError",
    "ConfigurationError",
]


def test_all_is_sorted_and_importable():
    names = [n for n in vllm_extract.__all__ if n != "__version__"]
    assert names == sorted(names)
    for name in vllm_extract.__all__:
        assert getattr(vllm_extract, name) is not None
    for name in DOCUMENTED:
        assert name in vllm_extract.__all__, name


def test_one_root_exception():
    for name in exceptions.__all__:
        obj = getattr(exceptions, name)
        if isinstance(obj, type):
            assert issubclass(obj, exceptions.VLLMClientError), name
    assert issubclass(exceptions.ConnectionError, ConnectionError)  # also the builtin
    tree = (exceptions.__doc__ or "").split("\n\n")[1]  # the tree at the top of exceptions.py
    for name in exceptions.__all__:
        assert f" {name} " in tree, f"{name} is missing from the tree in exceptions.py's docstring"
    err = exceptions.ContextOverflowError("too long", estimated_tokens=30_000, max_tokens=28_000)
    assert err.excess_tokens == 2_000
    assert exceptions.GenerationError("503", can_retry=True).can_retry
    assert exceptions.GPUMemoryError("full", utilization_percent=98.5).utilization_percent == 98.5


def test_importing_the_library_loads_no_engine():
    code = (
        "import sys, vllm_extract, vllm_extract.cli;"
        "print(','.join(m for m in ('vllm', 'torch', 'pynvml', 'transformers') if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == ""


def test_the_library_works_without_rich_or_typer():
    """Only ``vllm_extract.cli`` needs Typer and rich: importing the library loads neither (not
    even through a dependency: httpx imports rich when it is installed, so it is imported late)."""
    code = "import sys, vllm_extract;print(','.join(m for m in ('rich', 'typer', 'click') if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == ""


def _imports(module_file: str, *, top_level_only: bool) -> set[str]:
    import ast
    from pathlib import Path

    tree = ast.parse(Path(module_file).read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def test_layering():
    """Heavy engines load lazily; the pipeline talks to clients only through their interface;
    only the CLI (its display included) knows Typer and rich."""
    from pathlib import Path

    package = Path(vllm_extract.__file__).parent
    core_files = {"events.py"}
    core_folders = {"run", "extract", "output", "readers", "eval", "review"}
    for path in package.rglob("*.py"):
        relative = path.relative_to(package)
        everywhere = _imports(str(path), top_level_only=False)
        if relative.parts[0] != "cli":
            assert not everywhere & {"typer", "rich"}, path
        assert not _imports(str(path), top_level_only=True) & {"vllm", "torch", "pynvml", "transformers"}, path
        if (path.name in core_files and len(relative.parts) == 1) or relative.parts[0] in core_folders:
            assert not everywhere & {"vllm", "httpx", "torch", "pynvml"}, path


def test_clients_are_transports():
    """Issue 10: model resolution and the GPU pre-flight live in the runner; clients/ imports neither."""
    import ast
    from pathlib import Path

    for path in (Path(vllm_extract.__file__).parent / "clients").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level >= 2:
                assert not (node.module or "").startswith(("engine.gpu", "engine.models")), (path, node.module)
