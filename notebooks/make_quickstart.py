"""Write ``quickstart.ipynb`` from the cells below (outputs stripped): ``python notebooks/make_quickstart.py``.

The notebook is generated so that its code lives in one reviewable Python file; ``tests/e2e/test_notebook.py``
checks that the committed notebook equals what this script writes, and executes it top to bottom.
"""

from __future__ import annotations

from pathlib import Path

import nbformat

CELLS: list[tuple[str, str]] = [
    (
        "md",
        """# ssm-metarl quick start

A shipped meta-trained SSM policy acts, adapts to tasks it has never seen (by gradient steps and in
context), and a small policy trains from scratch. Everything runs on a CPU in a few minutes; nothing
downloads except the package itself when it is not installed (the first cell).

`BUDGET` scales every budget below (the tests run this notebook with a small one).""",
    ),
    (
        "code",
        """import importlib.util
import os
import subprocess
import sys

# Colab (or any environment without the package): install it from the repository. Set SSM_METARL_REPO to
# the repository you use (a git URL pip understands, or a local path to a clone).
if importlib.util.find_spec("ssm_metarl") is None:
    repo = os.environ.get("SSM_METARL_REPO", "")
    if not repo:
        raise RuntimeError("ssm_metarl is not installed: set SSM_METARL_REPO to a git URL or clone path")
    subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", "torch>=2.4", f"{repo}[app]"])

BUDGET = float(os.environ.get("SSM_METARL_NOTEBOOK_BUDGET", "1"))
print("budget scale", BUDGET)""",
    ),
    (
        "code",
        """import matplotlib.pyplot as plt
import numpy as np
import torch

from ssm_metarl import compare_adaptation, format_table, load_pretrained, recipe, train_ppo
from ssm_metarl.envs.tasks import get_family
from ssm_metarl.pretrained import list_pretrained, pretrained_info
from ssm_metarl.results import plot_returns

torch.set_num_threads(1)
print("shipped models:", list_pretrained())""",
    ),
    (
        "md",
        """## 1. Load a shipped model and watch it act

`cartpole-ssm` was meta-trained (MAML) on CartPole with randomised physics (`cartpole-physics`). Below,
one episode on a held-out task, drawn by Gymnasium's own renderer.""",
    ),
    (
        "code",
        """from ssm_metarl.app.render import record_episode

policy = load_pretrained("cartpole-ssm")
family = pretrained_info("cartpole-ssm")["family"]
dist = get_family(family)
task = dist.test[0]
episode = record_episode(policy, task, seed=0)
print(f"task {task}: return {episode.ret:.0f} in {episode.length} steps", episode.note)
if episode.frames:
    fig, axes = plt.subplots(1, 3, figsize=(9, 2.5))
    for ax, k in zip(axes, [0, len(episode.frames) // 2, len(episode.frames) - 1]):
        ax.imshow(episode.frames[k])
        ax.set_title(f"step {k}")
        ax.axis("off")
    plt.show()""",
    ),
    (
        "md",
        """## 2. Gradient adaptation to held-out and out-of-range physics

Standard adaptation takes policy-gradient steps on the current task's episodes only; hybrid adds a replay
loss on meta-training experience. Both start from the same weights and seeds; each column is the mean
return after that many steps, with a 95% interval over seeds.""",
    ),
    (
        "code",
        """steps = max(1, round(3 * min(BUDGET, 1)))
n_tasks = max(1, round(3 * min(BUDGET, 1)))
seeds = (0, 1)
cfg = recipe("adapt", family).replace(steps=steps, episodes=max(2, round(8 * min(BUDGET, 1))))
curves = {}
for split in ("test", "out_of_range"):
    result = compare_adaptation(policy, family, dist.split(split)[:n_tasks], cfg, seeds=seeds)
    curves[split] = result
    print(f"{split} tasks")
    print(format_table(result))""",
    ),
    (
        "code",
        """fig, axes = plt.subplots(1, 2, figsize=(10, 3.5), sharey=True)
for ax, (split, result) in zip(axes, curves.items()):
    shown = {k: v for k, v in result.items() if k != "hybrid - standard"}
    plot_returns(shown, ax=ax, title=f"{split} tasks", flat=["random policy"])
plt.show()""",
    ),
    (
        "md",
        """## 3. In-context adaptation (RL²) on 2D navigation

`navigation-ssm` was meta-trained with RL²: its recurrent state carries what it learned about the goal from
one episode of a trial to the next, with no gradient step. The table shows the return of each inner episode;
adaptation is the rise from the first to the later ones.""",
    ),
    (
        "code",
        """from ssm_metarl.meta.rl2 import evaluate_in_context

nav = load_pretrained("navigation-ssm")
nav_info = pretrained_info("navigation-ssm")
nav_dist = get_family("navigation-2d")
k = nav_info["episodes_per_trial"]
in_context = {
    split: evaluate_in_context(
        nav, "navigation-2d", nav_dist.split(split)[:n_tasks], k, seeds=seeds, label=split
    )
    for split in ("test", "out_of_range")
}
print(format_table(in_context))
ax = plot_returns(in_context, title="return per inner episode of a trial")
plt.show()""",
    ),
    (
        "md",
        """The paths of one trial: the agent searches in the first episode and, having found the goal, heads for it
in the next ones. The grey square is the range of meta-training goals.""",
    ),
    (
        "code",
        """from gymnasium.vector import AutoresetMode, SyncVectorEnv

from ssm_metarl.envs.trial import TrialEnv
from ssm_metarl.rl.evaluate import seeded_episodes


def trial_paths(task, seed=0):
    \"\"\"Positions of each inner episode of one trial (the trial's observation starts with the position).\"\"\"
    envs = SyncVectorEnv(
        [lambda: TrialEnv("navigation-2d", k, task=task)], autoreset_mode=AutoresetMode.SAME_STEP
    )
    positions = []
    try:
        episodes = seeded_episodes(envs, nav, seed, before_step=lambda obs: positions.append(obs[0].copy()))
    finally:
        envs.close()
    lengths = episodes.infos[0]["inner_episode_lengths"]
    ends = np.cumsum(lengths)
    return [np.array(positions[e - n : e])[:, :2] for n, e in zip(lengths, ends)]


fig, axes = plt.subplots(1, 2, figsize=(9, 4.5))
for ax, split in zip(axes, ("test", "out_of_range")):
    task = nav_dist.split(split)[0]
    for i, path in enumerate(trial_paths(task)):
        ax.plot(path[:, 0], path[:, 1], marker=".", ms=3, label=f"episode {i + 1}")
    ax.add_patch(plt.Rectangle((-0.5, -0.5), 1, 1, fill=False, color="grey"))
    ax.plot(task["goal_x"], task["goal_y"], "g*", ms=15, label="goal")
    ax.set_title(f"{split} goal")
    ax.set_aspect("equal")
axes[0].legend(fontsize=8)
plt.show()""",
    ),
    (
        "md",
        """## 4. Train a small policy from scratch

The PPO recipe for CartPole with an SSM policy, its budget cut to fit here (the full recipe solves it in
under 100k steps; see the README's results).""",
    ),
    (
        "code",
        """cfg = recipe("ppo", "CartPole-v1").replace(
    total_steps=max(2048, int(40_000 * BUDGET)), run__seed=0, run__progress=False
)
trained = train_ppo(cfg)
print(f"{cfg.total_steps} env steps in {trained.seconds:.0f} s; final evaluation {trained.final_eval}")
plt.plot(trained.episode_end_steps, trained.episode_returns, ".", ms=2)
plt.xlabel("env steps")
plt.ylabel("episode return")
plt.show()""",
    ),
]


def build() -> nbformat.NotebookNode:
    """The notebook, outputs stripped."""
    nb = nbformat.v4.new_notebook()
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
        "colab": {"provenance": []},
    }
    for kind, src in CELLS:
        cell = nbformat.v4.new_markdown_cell(src) if kind == "md" else nbformat.v4.new_code_cell(src)
        cell.pop("id", None)
        nb.cells.append(cell)
    nb.nbformat_minor = 4  # no cell ids: the file stays byte-stable
    return nb


def main() -> None:
    out = Path(__file__).with_name("quickstart.ipynb")
    nbformat.write(build(), out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
