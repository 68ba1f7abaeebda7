"""Environments: building seeded (vectorised) Gymnasium envs, task families and their wrappers.

:mod:`ssm_metarl.envs.make` builds envs by Gymnasium id and fails loudly on an unknown id; vector envs
use same-step autoreset, so a truncated episode's true final observation is in ``info["final_obs"]``.
"""
