"""The "About" tab: what the project is, the architecture as a picture (inline SVG, no download), the
papers its methods come from, where to read more, and the benchmark tables when the app runs from a
checkout that has them."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

REPO_ROOT = Path(__file__).resolve().parents[2]

INTRO = """\
## ssm-metarl: meta-reinforcement learning with state-space-model policies

A policy whose memory is a **structured state-space model** (a diagonal linear recurrence, S5/LRU style,
computed with a parallel scan) is **meta-trained** over a family of tasks (CartPole with different
physics, pendulums, 2-D navigation goals) so that at test time it **adapts** to a task it has never seen:

* **MAML** learns initial weights from which a few policy-gradient steps on the new task go a long way;
* **RL²** learns a recurrent policy whose state does the adapting, within one trial, without gradients;
* **standard** test-time adaptation takes policy-gradient steps on the new task's episodes only;
  **hybrid** adaptation adds a replay loss on earlier experience (weight `w`), to keep what was learned.

Every number in this app is measured when you press the button: returns are means over stochastic episodes,
intervals are 95% t-intervals over seeds, and the random policy is in every table.

### The tabs

1. **Load pre-trained model**: a shipped model's card, size, task family and measured zero-shot return.
2. **Meta-training**: train your own (MAML or RL², any of the backbones), watch the learning curve,
   cancel any time; the result is saved as a checkpoint and appears in the other tabs, for your browser
   session only.
3. **Test-time adaptation**: held-out, out-of-range or hand-set physics; standard, hybrid or both side by
   side from the same weights and seeds; the curve with intervals, the before/after table, and the episode
   before and after.
4. **Self-improvement**: run a few cycles of the self-improvement loop (Optuna proposes, each candidate is
   meta-trained and measured on five metrics, the better one is installed only when its gain holds up),
   or attach to a running daemon's folder; the incumbent's metrics per cycle and every decision.
"""


class Reference(NamedTuple):
    """A paper a method of this project comes from."""

    method: str
    authors: str
    year: int
    title: str
    url: str


REFERENCES: list[Reference] = [
    Reference(
        "MAML",
        "Finn, Abbeel and Levine",
        2017,
        "Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks",
        "https://arxiv.org/abs/1703.03400",
    ),
    Reference(
        "RL²",
        "Duan, Schulman, Chen, Bartlett, Sutskever and Abbeel",
        2016,
        "RL²: Fast Reinforcement Learning via Slow Reinforcement Learning",
        "https://arxiv.org/abs/1611.02779",
    ),
    Reference(
        "LRU (the `ssm` backbone)",
        "Orvieto, Smith, Gu, Fernando, Gulcehre, Pascanu and De",
        2023,
        "Resurrecting Recurrent Neural Networks for Long Sequences",
        "https://arxiv.org/abs/2303.06349",
    ),
    Reference(
        "S5 (diagonal SSM, parallel scan)",
        "Smith, Warrington and Linderman",
        2023,
        "Simplified State Space Layers for Sequence Modeling",
        "https://arxiv.org/abs/2208.04933",
    ),
    Reference(
        "Griffin / RG-LRU (the `gated_ssm` backbone)",
        "De, Smith, Fernando et al.",
        2024,
        "Griffin: Mixing Gated Linear Recurrences with Local Attention for Efficient Language Models",
        "https://arxiv.org/abs/2402.19427",
    ),
    Reference(
        "PPO",
        "Schulman, Wolski, Dhariwal, Radford and Klimov",
        2017,
        "Proximal Policy Optimization Algorithms",
        "https://arxiv.org/abs/1707.06347",
    ),
    Reference(
        "GAE",
        "Schulman, Moritz, Levine, Jordan and Abbeel",
        2016,
        "High-Dimensional Continuous Control Using Generalized Advantage Estimation",
        "https://arxiv.org/abs/1506.02438",
    ),
    Reference(
        "Experience replay (hybrid adaptation)",
        "Lin",
        1992,
        "Self-improving reactive agents based on reinforcement learning, planning and teaching "
        "(Machine Learning 8)",
        "https://doi.org/10.1007/BF00992699",
    ),
]
"""The papers the methods come from, in the order the About tab lists them."""


def references_markdown(refs: list[Reference] = REFERENCES) -> str:
    """The About tab's "References" section: one bullet per paper, its title linked."""
    lines = ["### References", ""]
    for r in refs:
        lines.append(f"* **{r.method}**: {r.authors} ({r.year}), [{r.title}]({r.url}).")
    return "\n".join(lines) + "\n"


REFERENCES_MD = references_markdown()


def _box(
    x: int, y: int, w: int, title: str, lines: tuple[str, ...], fill: str = "#eef3fb", stroke: str = "#4a6fa5"
) -> str:
    h = 30 + 14 * len(lines)
    cx = x + w // 2
    out = [
        f'<rect x="{x}" y="{y}" width="{w}" height="{h}" rx="8" fill="{fill}" stroke="{stroke}" '
        'stroke-width="1.5"/>',
        f'<text x="{cx}" y="{y + 20}" text-anchor="middle" font-family="sans-serif" font-size="13" '
        f'font-weight="bold" fill="#1b2a41">{title}</text>',
    ]
    for i, line in enumerate(lines):
        out.append(
            f'<text x="{cx}" y="{y + 38 + 14 * i}" text-anchor="middle" font-family="sans-serif" '
            f'font-size="11" fill="#44546a">{line}</text>'
        )
    return "\n".join(out)


def _arrow(x1: int, y1: int, x2: int, y2: int) -> str:
    return (
        f'<line x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}" stroke="#8a99ad" stroke-width="1.5" '
        'marker-end="url(#arr)"/>'
    )


def architecture_svg() -> str:
    """The layers (imports flow left to right, then down to the public API and its two front ends)."""
    layers = [
        ("models/", ("SSMs (LRU, RG-LRU), GRU,", "LSTM, Transformer, MLP")),
        ("envs/", ("task families: train,", "test, out-of-range")),
        ("rl/", ("recurrent PPO, GAE,", "REINFORCE")),
        ("meta/", ("MAML (functional params),", "RL² (in-context)")),
        ("adapt/", ("standard and hybrid", "(experience replay)")),
    ]
    parts = [
        '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 780 270" width="100%" '
        'style="max-width:780px" role="img" aria-label="ssm-metarl architecture">',
        '<defs><marker id="arr" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#8a99ad"/></marker></defs>',
    ]
    for i, (title, lines) in enumerate(layers):
        x = 10 + 155 * i
        parts.append(_box(x, 10, 140, title, lines))
        if i:
            parts.append(_arrow(x - 15, 40, x - 2, 40))
    parts.append(
        _box(
            10,
            110,
            760,
            "the public API: ssm_metarl",
            (
                "load_pretrained · train_maml · train_rl2 · compare_adaptation · save_policy / "
                "load_policy"
                " (safetensors + JSON checkpoints, shipped models with cards)",
            ),
        )
    )
    for x in (80, 235, 390, 545, 700):
        parts.append(_arrow(x, 68, x, 108))
    warm = {"fill": "#fdf0e6", "stroke": "#c0703a"}
    parts.append(_box(150, 200, 220, "app/ (this page)", ("Gradio: calls the API, draws",), **warm))
    parts.append(_box(410, 200, 220, "cli.py", ("ssm-metarl train / meta-train / adapt",), **warm))
    parts += [_arrow(260, 154, 260, 198), _arrow(520, 154, 520, 198), "</svg>"]
    return "\n".join(parts)


ARCHITECTURE_SVG = architecture_svg()


LINKS = """\
### Read more

* `README.md`: install, the main results and the commands that produced them.
* `docs/app.md`: this app (starting it, what each tab does, how it is tested).
* `docs/architecture.md`: the code as built, layer by layer.
* `benchmarks/results/`: every benchmark's JSON, markdown table and plot; `benchmarks/*.py` regenerate them.
* Python: `from ssm_metarl import load_pretrained, compare_adaptation, train_maml`; command line:
  `ssm-metarl --help`.
"""


def benchmark_tables(root: Path = REPO_ROOT, max_lines: int = 40) -> str:
    """The short benchmark markdown tables of ``benchmarks/results`` (empty when not run from a checkout);
    longer ones are only named."""
    folder = root / "benchmarks" / "results"
    if not folder.is_dir():
        return ""
    parts = []
    for md in sorted(folder.glob("*.md")):
        lines = [
            f"**{ln.lstrip('#').strip()}**" if ln.startswith("#") else ln
            for ln in md.read_text().splitlines()
        ]
        body = "\n".join(lines).strip() if len(lines) <= max_lines else "(long table: open the file)"
        parts.append(f"#### `benchmarks/results/{md.name}`\n\n{body}\n")
    return "### Benchmarks (from this checkout)\n\n" + "\n".join(parts) if parts else ""


__all__ = [
    "ARCHITECTURE_SVG",
    "INTRO",
    "LINKS",
    "REFERENCES",
    "REFERENCES_MD",
    "Reference",
    "benchmark_tables",
    "references_markdown",
]
