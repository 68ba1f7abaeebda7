"""Environments: building seeded (vectorised) Gymnasium envs, task families and their wrappers.

:mod:`ssm_metarl.envs.make` builds envs by Gymnasium id and fails loudly on an unknown id; vector envs
use same-step autoreset, so a truncated episode's true final observation is in ``info["final_obs"]``.
:mod:`ssm_metarl.envs.tasks` defines ``Task`` and ``TaskDistribution``; importing this package registers
every task family (:data:`TASK_FAMILIES`) and its Gymnasium id (``ssm_metarl/...``). MuJoCo itself is
imported only when a MuJoCo task env is built.
"""

from ssm_metarl.envs import (  # noqa: F401  (register the task families and env ids)
    classic,
    mujoco,
    trial,  # noqa: F401,I001  (RL² trial ids, one per family: after the families)
)
from ssm_metarl.envs.tasks import (
    TASK_FAMILIES,
    Task,
    TaskDistribution,
    family_for_env_id,
    get_family,
    set_tasks,
)

__all__ = ["TASK_FAMILIES", "Task", "TaskDistribution", "family_for_env_id", "get_family", "set_tasks"]
