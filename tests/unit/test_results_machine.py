"""The machine the README and the benchmark pages name is the machine the results files recorded.

A CPU model named in ``README.md`` or ``docs/benchmarks/*.md`` must be the ``machine.cpu`` of some results file
(of the file, of a run in it, or of a file it merged), with the core count the text gives it; where the text says
which files a CPU ran (``an Intel Xeon for `scan_speed`, `rsi` ...``), each of those files recorded that CPU.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs" / "benchmarks").glob("*.md"))]

_SUFFIX = r"(?: (?:Platinum|Gold|Silver|Bronze|Processor|Scalable|[A-Za-z]*\d[\w-]*))*"
CPU_MODEL = re.compile(
    r"\b(?:Intel(?:\(R\))? (?:Xeon|Core)(?:\(R\))?|AMD (?:EPYC|Ryzen|Opteron|Threadripper)(?:\(TM\))?"
    r"|Apple M\d\w*|(?:AWS )?Graviton\d*|Ampere Altra)" + _SUFFIX
)
N_CORE = re.compile(r"(\d+)-core (" + CPU_MODEL.pattern + ")")
FOR_FILES = re.compile(r"(" + CPU_MODEL.pattern + r") for ((?:`\w+`(?:,| and|,? and)?\s*)+)")


def _norm(cpu: str) -> str:
    """``"Intel(R) Xeon(R) Processor"`` -> ``"intel xeon processor"``: the text writes no trademarks."""
    return " ".join(re.sub(r"\((?:R|TM)\)", " ", cpu).lower().split())


def _machines(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Every machine a results file recorded: its own, its runs', and those of the files it merged."""
    found = [data.get("machine")]
    runs = data.get("runs")
    if isinstance(runs, list):
        found += [r.get("machine") for r in runs if isinstance(r, dict)]
    found += [m.get("machine") for m in data.get("merged_from", []) if isinstance(m, dict)]
    return [m for m in found if isinstance(m, dict) and m.get("cpu")]


def recorded() -> dict[str, list[dict[str, Any]]]:
    return {p.stem: _machines(json.loads(p.read_text())) for p in sorted(RESULTS.glob("*.json"))}


def _named(text: str) -> set[str]:
    return {m.group(0) for m in CPU_MODEL.finditer(" ".join(text.split()))}


def test_every_cpu_model_the_docs_name_is_in_a_results_file() -> None:
    machines = [m for ms in recorded().values() for m in ms]
    assert machines, "no results file records a machine"
    named = {(doc.relative_to(ROOT), model) for doc in DOCS for model in _named(doc.read_text())}
    for doc, model in sorted(named):
        assert any(_norm(model) in _norm(m["cpu"]) for m in machines), (
            f"{doc} names the CPU {model!r}, which no benchmarks/results/*.json recorded "
            f"(they have {sorted({m['cpu'] for m in machines})})"
        )
    for doc in DOCS:
        for cores, model in N_CORE.findall(" ".join(doc.read_text().split())):
            assert any(_norm(model) in _norm(m["cpu"]) and m.get("cores") == int(cores) for m in machines), (
                f"{doc.relative_to(ROOT)}: no results file recorded a {cores}-core {model}"
            )


def test_the_files_the_docs_assign_to_a_cpu_recorded_it() -> None:
    files = recorded()
    checked = 0
    for doc in DOCS:
        for match in FOR_FILES.finditer(" ".join(doc.read_text().split())):
            model, stems = match.group(1), re.findall(r"`(\w+)`", match.group(2))
            for stem in stems:
                assert stem in files, f"{doc.relative_to(ROOT)} says {stem} ran on an {model}: no such file"
                cpus = {m["cpu"] for m in files[stem]}
                assert cpus and all(_norm(model) in _norm(c) for c in cpus), (
                    f"{doc.relative_to(ROOT)} says {stem} ran on an {model}; its results file says {cpus}"
                )
                checked += 1
    assert checked, "the README no longer says which results files ran on which CPU"


def test_the_pattern_finds_the_models_a_machine_statement_would_use() -> None:
    text = "on a 2-core Intel Xeon; an AMD EPYC 7763, an Intel(R) Xeon(R) Platinum 8375C and an Apple M2"
    assert _named(text) == {"Intel Xeon", "AMD EPYC 7763", "Intel(R) Xeon(R) Platinum 8375C", "Apple M2"}
    assert N_CORE.findall("a 2-core AMD EPYC")[0][:2] == ("2", "AMD EPYC")
    assert _norm("Intel Xeon") in _norm("Intel(R) Xeon(R) Processor")
