"""What the package's docstrings and comments cite, a reader of the repository can open: no design document
that lives outside it (ANCHORS.md, EVALUATION.md, ...), and every results file (``benchmarks/results/<name>.md``)
and docs page (``docs/<page>.md``) named in ``ssm_metarl/`` exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "ssm_metarl"

OUTSIDE_DOCUMENTS = re.compile(r"\b(ANCHORS|EVALUATION|ARCHITECTURE|LESSONS|STYLE)\.md\b")
RESULTS_FILE = re.compile(r"benchmarks/results/([A-Za-z0-9_.*-]+?)\.md")
DOCS_PAGE = re.compile(r"\bdocs/([A-Za-z0-9_/.-]+?)\.md")


def _package_texts() -> dict[str, str]:
    """Every text file under ssm_metarl/ (sources, model cards, C source), by path relative to the root."""
    texts = {}
    for path in sorted(PACKAGE.rglob("*")):
        if not path.is_file() or "__pycache__" in path.parts:
            continue
        data = path.read_bytes()
        if b"\0" in data:  # weights and other binary files
            continue
        try:
            texts[str(path.relative_to(ROOT))] = data.decode("utf-8")
        except UnicodeDecodeError:
            continue
    return texts


TEXTS = _package_texts()


def _citations(pattern: re.Pattern[str]) -> list[tuple[str, int, str]]:
    """(file, line, cited name) for every match of ``pattern`` in the package."""
    return [
        (name, line_no, m.group(1))
        for name, text in TEXTS.items()
        for line_no, line in enumerate(text.splitlines(), 1)
        for m in pattern.finditer(line)
    ]


def test_package_has_text_files_to_check():
    assert "ssm_metarl/recipes.py" in TEXTS and "ssm_metarl/models/_scan.c" in TEXTS


def test_no_design_document_outside_the_repository_is_named():
    found = [f"{name}:{line}: {doc}.md" for name, line, doc in _citations(OUTSIDE_DOCUMENTS)]
    assert not found, (
        "these cite design documents that are not in the repository; cite docs/concepts/evaluation.md, "
        "docs/concepts/tasks.md or docs/architecture.md, or state the reason inline:\n" + "\n".join(found)
    )


def test_cited_results_files_exist():
    cited = _citations(RESULTS_FILE)
    assert cited, "expected the package to cite results files (recipes.py does)"
    missing = [
        f"{name}:{line}: benchmarks/results/{stem}.md"
        for name, line, stem in cited
        if not list((ROOT / "benchmarks" / "results").glob(f"{stem}.md"))
    ]
    assert not missing, "cited results files that do not exist:\n" + "\n".join(missing)


def test_cited_docs_pages_exist():
    missing = [
        f"{name}:{line}: docs/{page}.md"
        for name, line, page in _citations(DOCS_PAGE)
        if not (ROOT / "docs" / f"{page}.md").is_file()
    ]
    assert not missing, "cited docs pages that do not exist:\n" + "\n".join(missing)


@pytest.mark.parametrize(
    ("text", "pattern", "expected"),
    [
        ("see ANCHORS.md, and EVALUATION.md", OUTSIDE_DOCUMENTS, ["ANCHORS", "EVALUATION"]),
        ("see docs/architecture.md", OUTSIDE_DOCUMENTS, []),
        ("(``benchmarks/results/ssm_backbone_maml_lr2.md``)", RESULTS_FILE, ["ssm_backbone_maml_lr2"]),
        ("``docs/concepts/evaluation.md``", DOCS_PAGE, ["concepts/evaluation"]),
    ],
)
def test_patterns_find_what_they_should(text, pattern, expected):
    assert [m.group(1) for m in pattern.finditer(text)] == expected
