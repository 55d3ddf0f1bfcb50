"""Docs and docstrings cite papers by authors, title, venue and year (or a URL), never by files
this repository does not have (the project's private notes: "paper 003", reference/*.md)."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUTSIDE = re.compile(r"paper 0\d\d|reference/\w+\.md|papers/|shared/reference")


def test_no_citation_points_outside_the_repository():
    files = [ROOT / "README.md"]
    for folder, pattern in (("mvspin", "*.py"), ("calibration", "*.py"), ("docs", "*.md"), ("configs", "*.yaml"),
                            ("tools", "*.py")):
        files += sorted((ROOT / folder).rglob(pattern))
    assert len(files) > 100
    found = [f"{f.relative_to(ROOT)}:{n}: {line.strip()}" for f in files
             for n, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1) if OUTSIDE.search(line)]
    assert found == []
    # the method and the one it extends are cited in full where the training loop is described
    trainer = (ROOT / "mvspin" / "learning" / "trainer.py").read_text(encoding="utf-8")
    assert "Multi-view Model-fitting*, WACV 2021" in trainer and "Model-fitting in the Loop*, ICCV 2019" in trainer
