"""The layers import downward only (docs/ARCHITECTURE.md), ``calibration`` (the lowest layer)
imports from ``mvspin`` only its dependency-free shared core, commands are thin shells (nothing outside ``mvspin/cli`` imports it), and the
jobs' entry points (``mvspin.apps``) sit right under the command line (only ``mvspin.cli`` and
``tools/`` import them)."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Lowest first. The shared modules (atomic, config, errors, io_outputs, rendering) may be used by
# any layer and import no layer above geometry.
LAYERS = ("geometry", "body", "fitting", "data", "detection", "regressor", "learning", "apps", "cli")
SHARED = ("atomic", "config", "errors", "io_outputs", "progress", "rendering", "_version")
# The dependency-free core under every layer, ``calibration`` included: it imports nothing from
# mvspin but itself (and the package's __init__, which holds only the version).
CORE = ("mvspin.errors", "mvspin.atomic", "mvspin.progress")


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _importers(prefix: str, files: list[Path]) -> list[str]:
    return sorted(str(f.relative_to(ROOT)) for f in files
                  if any(n == prefix or n.startswith(prefix + ".") for n in _imports(f)))


def test_no_layer_or_tool_imports_the_command_line():
    # (mvspin/__main__.py is `python -m mvspin`: the command line itself)
    outside = [f for f in (ROOT / "mvspin").rglob("*.py")
               if "cli" not in f.relative_to(ROOT / "mvspin").parts and f.name != "__main__.py"]
    outside += list((ROOT / "tools").glob("*.py"))
    assert len(outside) > 50  # the scan sees the package
    assert _importers("mvspin.cli", outside) == []


def test_only_the_command_line_and_tools_import_the_apps():
    library = [f for f in (ROOT / "mvspin").rglob("*.py")
               if f.relative_to(ROOT / "mvspin").parts[0] not in ("cli", "apps")]
    assert len(library) > 50  # the scan sees the package
    assert _importers("mvspin.apps", library) == []
    assert "tools/bench_inference.py" in _importers("mvspin.apps", list((ROOT / "tools").glob("*.py")))
    assert "mvspin/cli/infer.py" in _importers("mvspin.apps", list((ROOT / "mvspin" / "cli").glob("*.py")))


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "mvspin" and len(parts) > 1 else None


def test_layers_import_downward_only_and_calibration_stands_alone():
    upward = []
    for f in (ROOT / "mvspin").rglob("*.py"):
        rel = f.relative_to(ROOT / "mvspin").parts
        own = rel[0].removesuffix(".py")
        if own not in LAYERS and own not in SHARED:
            continue
        limit = LAYERS.index("geometry") if own in SHARED else LAYERS.index(own)
        for name in _imports(f):
            layer = _layer(name)
            if layer in LAYERS and LAYERS.index(layer) > limit:
                upward.append(f"{f.relative_to(ROOT)} imports {name}")
    assert upward == []
    calibration = list((ROOT / "calibration").rglob("*.py"))
    assert len(calibration) > 10
    beyond_core = sorted(f"{f.relative_to(ROOT)} imports {name}" for f in calibration for name in _imports(f)
                         if (name == "mvspin" or name.startswith("mvspin.")) and name not in CORE)
    assert beyond_core == []
    assert "mvspin.errors" in set().union(*map(_imports, calibration))  # the scan sees its imports


def test_the_shared_core_imports_nothing_from_mvspin_but_itself():
    for module in CORE:
        path = ROOT / (module.replace(".", "/") + ".py")
        imported = sorted(n for n in _imports(path) if n == "mvspin" or n.startswith("mvspin."))
        assert set(imported) <= set(CORE) - {module}, f"{module} imports {imported}"
    assert "mvspin.errors" in _imports(ROOT / "mvspin" / "atomic.py")
    # and importing it loads no other mvspin module (the package __init__ holds only the version)
    import subprocess
    import sys

    code = ("import sys; import mvspin.errors, mvspin.atomic, mvspin.progress; "
            "print(sorted(m for m in sys.modules if m.startswith('mvspin')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert eval(out) == ["mvspin", "mvspin._version", *sorted(CORE)]
