"""Render an :class:`~ssm_metarl.adapt.evaluate.AdaptationComparison` as the table the CLI, the app and the
benchmarks print: one row per adaptation step, one column per mode, the random policy on top, and the
paired hybrid - standard difference when both modes ran. Every cell is ``mean +- 95% half-width`` over
seed means; the header says what was measured and with how much data.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ssm_metarl.adapt.evaluate import AdaptationComparison


def _cell(mean: float, half: float) -> str:
    return f"{mean:.2f} +- {half:.2f}"


def _label(comparison: AdaptationComparison, mode: str) -> str:
    return f"hybrid (w={comparison.experience_weight:g})" if mode == "hybrid" else mode


def format_table(comparison: AdaptationComparison, markdown: bool = False) -> str:
    """The comparison as a plain-text table (or a markdown one), ending with a newline."""
    c = comparison
    modes = c.modes
    both = "standard" in modes and "hybrid" in modes
    header = ["step", "env steps", *(_label(c, m) for m in modes), *(["hybrid - standard"] if both else [])]
    per_step = c.curves[modes[0]].env_steps_per_step
    rand = c.random_summary()
    rows = [["random policy", "", _cell(*rand), *([""] * (len(modes) - 1)), *([""] if both else [])]]
    diff = c.paired_difference("hybrid", "standard") if both else []
    for k in range(c.steps + 1):
        label = "before adaptation" if k == 0 else f"after {k} step{'s' if k > 1 else ''}"
        cells = [_cell(*c.summary(m)[k]) for m in modes]
        rows.append([label, f"{round(k * per_step)}", *cells, *([_cell(*diff[k])] if both else [])])
    lines = [
        f"{c.family}: {len(c.tasks)} tasks x {len(c.seeds)} seeds (seeds {list(c.seeds)}), "
        f"{c.num_trajectories} stochastic episodes per evaluation and per adaptation step "
        f"(~{per_step:.0f} env steps each); algo {c.algo}, lr {c.lr:g}",
        "mean return +- 95% t-interval over seed means; env steps: adaptation data used so far (per task)",
    ]
    if "hybrid" in modes:
        lines.append(
            f"hybrid replay buffer: {c.buffer_steps} env steps collected beforehand on training tasks"
        )
    lines.append("")
    if markdown:
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "|".join("---" for _ in header) + "|")
        lines += ["| " + " | ".join(r) + " |" for r in rows]
    else:
        widths = [max(len(str(r[j])) for r in [header, *rows]) for j in range(len(header))]
        fmt = "  ".join(f"{{:<{w}}}" if j == 0 else f"{{:>{w}}}" for j, w in enumerate(widths))
        lines.append(fmt.format(*header))
        lines += [fmt.format(*r) for r in rows]
    return "\n".join(lines) + "\n"


__all__ = ["format_table"]
