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


def test_commands_are_thin_and_the_library_draws_nothing():
    """No module of the command line over 150 lines; no library module parses argv or draws
    progress bars (argparse and tqdm belong to mvspin.cli)."""
    big = {str(f.relative_to(ROOT)): n for f in (ROOT / "mvspin" / "cli").glob("*.py")
           if (n := len(f.read_text(encoding="utf-8").splitlines())) > 150}
    assert big == {}
    library = [f for f in (*(ROOT / "mvspin").rglob("*.py"), *(ROOT / "calibration").rglob("*.py"))
               if "cli" not in f.relative_to(ROOT).parts]
    assert _importers("argparse", library) == [] and _importers("tqdm", library) == []


def test_every_command_has_one_override_syntax_and_one_output_flag():
    """Each command's help offers --config FILE and --set KEY=VALUE, and no other override form;
    a command that writes a file or folder names it -o/--out."""
    import argparse

    from mvspin.cli.main import build_parser

    def commands(parser, prefix=()):
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            yield prefix, parser
        for sub in subs:
            for name, child in sub.choices.items():
                yield from commands(child, (*prefix, name))

    seen = 0
    for name, parser in commands(build_parser()):
        text = parser.format_help()
        assert "--set KEY=VALUE" in text and "--config FILE.yaml" in text, name
        assert "--fit " not in text and "--fit-config" not in text and "--output" not in text, name
        positional = [a for a in parser._actions if not a.option_strings and a.dest != "help"]
        assert all("=" not in str(a.metavar or "") for a in positional), name  # no positional KEY=VALUE
        outs = [a for a in parser._actions if a.dest == "out"]
        assert all(a.option_strings in ([], ["-o", "--out"]) for a in outs), (name, outs)
        seen += 1
    assert seen >= 14


def test_benchmarks_use_public_names_only():
    """tools/bench_*.py import no private name of mvspin or calibration and touch no private
    attribute: a benchmark measures what users call."""
    private = []
    for f in (ROOT / "tools").glob("bench_*.py"):
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in ("mvspin", "calibration"):
                private += [f"{f.name}: {node.module}.{a.name}" for a in node.names if a.name.startswith("_")]
                private += [f"{f.name}: {node.module}" for part in node.module.split(".") if part.startswith("_")]
            elif isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
                private.append(f"{f.name}:{node.lineno}: .{node.attr}")
    assert private == []
