"""Commands are thin shells: nothing outside ``mvspin/cli`` imports it, and the inference
pipeline sits right under the command line (only ``mvspin.cli`` and ``tools/`` import it)."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


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


def test_only_the_command_line_and_tools_import_the_inference_pipeline():
    library = [f for f in (ROOT / "mvspin").rglob("*.py")
               if f.relative_to(ROOT / "mvspin").parts[0] not in ("cli", "inference")]
    assert _importers("mvspin.inference", library) == []
    assert "tools/bench_inference.py" in _importers("mvspin.inference", list((ROOT / "tools").glob("*.py")))
    assert "mvspin/cli/infer.py" in _importers("mvspin.inference", list((ROOT / "mvspin" / "cli").glob("*.py")))
