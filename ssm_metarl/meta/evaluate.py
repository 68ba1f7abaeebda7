"""The baseline rows of every adaptation table (``docs/concepts/evaluation.md``): a uniformly random and a
constant policy on fixed tasks, acted through the same episode loop as every policy."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from ssm_metarl.envs.tasks import Task, get_family
from ssm_metarl.results import Returns
from ssm_metarl.rl.evaluate import episodes_returns, seeded_episodes
from ssm_metarl.rl.rollout import BaselinePolicy


def baseline_returns(
    family: str,
    tasks: Sequence[Task],
    kind: Literal["random", "constant"] = "random",
    episodes: int = 20,
    seeds: Sequence[int] = (0,),
) -> Returns:
    """Returns on ``tasks`` of uniformly random actions (``kind="random"``) or of a constant action
    (``"constant"``: the first action of a discrete space, the middle of the box of a continuous one);
    ``episodes`` episodes per task and seed, env and action noise seeded."""
    if not tasks:
        raise ValueError("baseline_returns needs at least one task")
    dist = get_family(family)
    results = []
    for seed in seeds:
        for i, task in enumerate(tasks):
            envs = dist.make_vec_env([task] * episodes, seed=seed + 1000 * i, fast=True)
            try:
                actor = BaselinePolicy(
                    envs.single_observation_space, envs.single_action_space, kind, seed + i
                )
                results.append(seeded_episodes(envs, actor, seed + 1000 * i))
            finally:
                envs.close()
    label = "random policy" if kind == "random" else "constant action"
    return episodes_returns(results, tuple(seeds), label, tuple(str(t) for t in tasks), kind=kind)


def random_policy_returns(family: str, tasks: Sequence[Task], episodes: int = 20, seed: int = 0) -> float:
    """Mean return of uniformly random actions on ``tasks`` (one seed)."""
    return baseline_returns(family, tasks, "random", episodes, (seed,)).mean


__all__ = ["baseline_returns", "random_policy_returns"]
