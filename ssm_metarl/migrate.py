"""Where the seed projects' names live now, and their imports rewritten for ``ssm_metarl``.

The seeds (``SSM-MetaRL-Unified``, ``SSM-MetaRL-TestCompute``) import from top-level packages
(``core.ssm``, ``meta_rl.meta_maml``, ``adaptation...``, ``experience...``, ``env_runner...``). Every name they
use is exported by ``ssm_metarl`` itself; :data:`SEED_NAMES` says where each is defined, and
:func:`translate_imports` rewrites a snippet's seed imports::

    >>> print(translate_imports("from core.ssm import StateSpaceModel"))
    from ssm_metarl import StateSpaceModel

A seed module or name with no counterpart raises :class:`MigrationError` naming what to use instead, rather
than leaving an import that fails later. ``docs/migrating.md`` is the human-readable table.
"""

from __future__ import annotations

import re

SEED_NAMES: dict[str, dict[str, str]] = {
    "core.ssm": {"StateSpaceModel": "ssm_metarl.models.neural_ssm"},
    "core.improved_ssm": {"ImprovedSSM": "ssm_metarl.models.improved"},
    "meta_rl.meta_maml": {
        "MetaMAML": "ssm_metarl.meta.supervised",
        "SSMMetaPolicy": "ssm_metarl.meta.seed_api",
        "MetaMAMLTrainer": "ssm_metarl.meta.seed_api",
        "TaskBatch": "ssm_metarl.meta.seed_api",
    },
    "meta_rl.ppo_trainer": {"train_ppo": "ssm_metarl.rl.ppo", "PPOConfig": "ssm_metarl.config"},
    "adaptation.test_time_adaptation": {
        "Adapter": "ssm_metarl.adapt.supervised",
        "AdaptationConfig": "ssm_metarl.adapt.supervised",
    },
    "adaptation.test_time_adapter": {"TestTimeAdapter": "ssm_metarl.adapt.online"},
    "adaptation.standard_adapter": {"StandardAdapter": "ssm_metarl.adapt.standard"},
    "adaptation.hybrid_adapter": {"HybridAdapter": "ssm_metarl.adapt.hybrid"},
    "experience.experience_buffer": {"ExperienceBuffer": "ssm_metarl.adapt.replay"},
    "env_runner.environment": {"Environment": "ssm_metarl.envs.make"},
    "experiments.baselines": {
        "LSTM": "ssm_metarl.models.rnn",
        "GRU": "ssm_metarl.models.rnn",
        "Transformer": "ssm_metarl.models.transformer",
        "MLP": "ssm_metarl.models.mlp",
    },
}
"""seed module -> {seed name -> the ``ssm_metarl`` module that defines it}; every name is also importable
from ``ssm_metarl`` directly."""

NOT_PORTED: dict[str, str] = {
    "experiments.task_distributions": "task families are ssm_metarl.envs.tasks (get_family, TASK_FAMILIES)",
    "experiments.quick_benchmark": "a script, not a module: run `ssm-metarl demo` (or `make demo`)",
    "experiments.serious_benchmark": "a script: the MuJoCo benchmarks are benchmarks/ppo_mujoco.py",
    "recursive_self_improvement": "the loop is ssm_metarl.rsi.SelfImprovement (`ssm-metarl rsi run`)",
    "rsi_daemon": "the daemon is `ssm-metarl rsi start|status|logs|stop` (ssm_metarl.rsi.daemon)",
}
"""seed modules with no importable counterpart, and what to use instead."""


class MigrationError(ImportError):
    """A seed import with no ``ssm_metarl`` counterpart; the message says what to use instead."""


_IMPORT = re.compile(
    r"^(?P<indent>[ \t]*)from\s+(?P<module>[\w.]+)\s+import\s+(?P<names>[^#\n]+?)[ \t]*$", re.M
)
_BARE = re.compile(r"^[ \t]*import\s+(?P<module>[\w.]+)", re.M)


def where(module: str, name: str) -> str:
    """The ``ssm_metarl`` module defining seed ``module``'s ``name`` (``"core.ssm", "StateSpaceModel"``)."""
    if module in NOT_PORTED:
        raise MigrationError(f"the seed module {module} has no counterpart: {NOT_PORTED[module]}")
    names = SEED_NAMES.get(module)
    if names is None:
        raise MigrationError(
            f"{module} is not a seed module ssm_metarl knows; the seed modules are {sorted(SEED_NAMES)}"
        )
    if name not in names:
        raise MigrationError(
            f"the seed module {module} had no {name!r} that ssm_metarl provides; it provides {sorted(names)}"
        )
    return names[name]


def translate_imports(code: str) -> str:
    """``code`` with every ``from <seed module> import a, b`` rewritten to ``from ssm_metarl import a, b``.

    Other imports (``torch``, ``gymnasium``, ...) are left alone; ``import core.ssm`` (a bare import of a seed
    module) and unknown seed names raise :class:`MigrationError`.
    """
    seeds = set(SEED_NAMES) | set(NOT_PORTED)
    packages = {m.split(".")[0] for m in seeds}

    def is_seed(module: str) -> bool:
        return module in seeds or module.split(".")[0] in packages

    for m in _BARE.finditer(code):
        if is_seed(m["module"]):
            raise MigrationError(
                f"`import {m['module']}` imports a seed module; write `from ssm_metarl import <name>` "
                f"(see ssm_metarl.migrate.SEED_NAMES)"
            )

    def rewrite(m: re.Match[str]) -> str:
        module = m["module"]
        if not is_seed(module):
            return m[0]
        names = [n.strip() for n in m["names"].strip("()").split(",") if n.strip()]
        for n in names:
            where(module, n.split(" as ")[0].strip())
        return f"{m['indent']}from ssm_metarl import {', '.join(names)}"

    return _IMPORT.sub(rewrite, code)


__all__ = ["NOT_PORTED", "SEED_NAMES", "MigrationError", "translate_imports", "where"]
