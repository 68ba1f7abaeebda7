"""Named, complete configs: the one place a default hyper-parameter is chosen.

``recipe(algo, target)`` returns the full config (:mod:`ssm_metarl.config`) that the CLI, the app, the demo,
the benchmarks and the tests start from; a flag or a ``cfg.replace(...)`` overrides one field of it. The
target is a Gymnasium id for ``ppo`` / ``pg`` and a task family for ``maml`` / ``rl2`` / ``adapt``.

============  ==============================================  ===============================================
algo          returns                                         chosen by (results under benchmarks/results/)
============  ==============================================  ===============================================
``ppo``       PPOConfig: discrete or continuous control,      ``ppo_cartpole.py`` (``ppo_cartpole.md``),
              read off the env's action space                 ``ppo_mujoco.py`` (``ppo_mujoco.md``)
``pg``        PGConfig                                        the REINFORCE behaviour test (800 episodes)
``rl2``       PPOConfig on the family's trial env             ``meta_navigation.py``, ``meta_bandits.py``,
                                                              ``meta_cartpole.py``
``maml``      MAMLConfig                                      ``maml_navigation_variants.py``,
                                                              ``pendulum_adapt_lr.py``, ``meta_cheetah.py``
``adapt``     AdaptConfig: the family's MAML inner loop       ``adaptation.py``
============  ==============================================  ===============================================

``model=`` picks another backbone for the same recipe (mlp backbones get two layers, the others one; RL² has
its own backbone settings, :data:`RL2_BACKBONES`, and PPO on POPGym's memory envs :data:`MEMORY_BACKBONES`,
both chosen on tasks that need recall).
"""

from __future__ import annotations

from typing import Literal, cast, overload

import gymnasium as gym

from ssm_metarl.config import (
    MODEL_KINDS,
    AdaptConfig,
    MAMLConfig,
    ModelConfig,
    ModelKind,
    PGConfig,
    PPOConfig,
)
from ssm_metarl.errors import ConfigError

Algo = Literal["ppo", "pg", "maml", "rl2", "adapt"]
ALGOS: tuple[str, ...] = ("ppo", "pg", "maml", "rl2", "adapt")

_SSM = ModelConfig(kind="ssm", hidden_dim=64, state_dim=64, num_layers=1, separate_critic=True)

DISCRETE_PPO = PPOConfig(
    total_steps=150_000,
    num_envs=8,
    rollout_steps=64,
    lr=1e-3,
    update_epochs=10,
    num_minibatches=2,
    gamma=0.98,
    gae_lambda=0.8,
    model=_SSM,
)
"""Discrete control (CartPole-like), timed by ``ppo_cartpole.py`` (``benchmarks/results/ppo_cartpole.md``).
The critic has its own backbone so that value-loss gradients do not move the policy's features: with a
shared trunk the ssm reaches 475 on CartPole and does not hold it (no results file holds that run)."""

CONTINUOUS_PPO = DISCRETE_PPO.replace(
    total_steps=1_000_000,
    rollout_steps=256,
    update_epochs=5,
    num_minibatches=8,
    gamma=0.99,
    gae_lambda=0.95,
    normalize_obs=True,
    normalize_reward=True,
    model=_SSM.replace(init_log_std=-0.5),
)
"""Continuous control (MuJoCo, Pendulum): observation and reward normalisation, initial log-std -0.5
(``benchmarks/results/ppo_mujoco.md``)."""

RL2_EPISODES_PER_TRIAL: dict[str, int] = {"navigation-2d": 4, "cartpole-physics": 2}
"""Episodes per RL² trial by family (bandit families: 1, a trial is one episode of N pulls; others: 2)."""


def is_discrete(env_id: str) -> bool:
    """Whether ``env_id`` acts in a Discrete space (builds the env once; unknown ids raise the env error)."""
    from ssm_metarl.envs.make import make_env

    env = make_env(env_id)
    try:
        return isinstance(env.action_space, gym.spaces.Discrete)
    finally:
        env.close()


def _family_env_id(family: str) -> str:
    from ssm_metarl.envs.tasks import get_family

    dist = get_family(family)
    return dist.task_env_id(dist.train[0])


def episodes_per_trial(family: str) -> int:
    """The RL² recipe's episodes per trial for ``family``."""
    if family.startswith("bandit"):
        return 1
    return RL2_EPISODES_PER_TRIAL.get(family, 2)


def _with_model(model: ModelConfig, kind: ModelKind | None) -> ModelConfig:
    if kind is None or kind == model.kind:
        return model
    return model.replace(kind=kind, num_layers=2 if kind == "mlp" else 1)


MEMORY_BACKBONES: dict[str, dict[str, object]] = {
    "ssm": {"complex": True, "num_layers": 2},
    "gated_ssm": {"num_layers": 2},
}
"""PPO backbone settings by kind on memory tasks (POPGym's envs, :func:`is_memory_task`): two layers, and a
complex ssm rather than the real one CartPole uses, because these tasks need recall. Chosen by
``ssm_backbone.py`` on POPGym's RepeatPrevious and RepeatFirst with selection seeds, by mean MMER
(``benchmarks/results/ssm_backbone.md``). Kinds not named here keep the recipe's (one layer; mlp two)."""


def is_memory_task(env_id: str) -> bool:
    """Whether ``env_id`` is one of POPGym's memory envs (``popgym-<Name><Level>-v0``), whose PPO recipe uses
    :data:`MEMORY_BACKBONES`."""
    return env_id.startswith("popgym-")


def ppo_recipe(env_id: str, model: ModelKind | None = None) -> PPOConfig:
    """PPO on ``env_id``: discrete or continuous control by its action space; on a memory task
    (:func:`is_memory_task`) the backbone takes its :data:`MEMORY_BACKBONES` settings."""
    base = DISCRETE_PPO if is_discrete(env_id) else CONTINUOUS_PPO
    backbone = _with_model(base.model, model)
    if is_memory_task(env_id):
        backbone = backbone.replace(**MEMORY_BACKBONES.get(backbone.kind, {}))
    return base.replace(env_id=env_id, model=backbone)


def pg_recipe(env_id: str, model: ModelKind | None = None) -> PGConfig:
    """REINFORCE with a separate baseline network: on CartPole-v1 a shared trunk learns far less in the
    REINFORCE behaviour test's budget (``tests/behaviour/test_learning.py``; no results file holds it)."""
    discrete = is_discrete(env_id)
    cfg = PGConfig(
        env_id=env_id, lr=3e-3 if discrete else 1e-3, num_envs=8, normalize_obs=not discrete, model=_SSM
    )
    return cfg.replace(model=_with_model(cfg.model, model))


RL2_KIND: ModelKind = "gated_ssm"
"""The RL² recipe's backbone when none is named."""
RL2_BACKBONES: dict[str, dict[str, object]] = {
    "gated_ssm": {"num_layers": 2, "ring_min": 0.1, "state_dim": 32, "conv_width": 4},
    "ssm": {"complex": True},
}
"""RL² backbone settings by kind: an input-gated recurrence can choose what to keep from a trial, which
in-context adaptation needs. The kind and depth were chosen by ``ssm_backbone.py`` on navigation-2d RL² with
validation goals and selection seeds (``benchmarks/results/ssm_backbone.md``). ``ring_min=0.1`` gives the
gated ssm fast channels besides its slow ones: a one-step difference (where the reward is going) needs a decay
well below the default ring's 0.9. It was chosen by ``rl2_recipe.py`` on five selection seeds, by the mean and
the worst seed of episode 2 (``benchmarks/results/rl2_recipe.md``). 32 state channels per layer instead of 64
learn as well on the same seeds, on the validation goals and on 200 goals sampled from the training
distribution, in about 0.85 of the seconds per run (``benchmarks/results/rl2_recipe_n32.md``,
``benchmarks/results/rl2_recipe_edge.md``). A causal convolution of 4 taps before each recurrence (Griffin's
Conv1D) scores at least as well as the same model without it on every one of the five selection seeds'
validation goals, and better on four of five on the sampled training-distribution goals
(``benchmarks/results/rl2_recipe_conv.md``)."""


def rl2_recipe(family: str, model: ModelKind | None = None, trial_episodes: int | None = None) -> PPOConfig:
    """PPO over trials of ``trial_episodes`` episodes (default :func:`episodes_per_trial`) of one task, with
    the :data:`RL2_KIND` backbone (or ``model``) in its :data:`RL2_BACKBONES` settings."""
    from ssm_metarl.envs.trial import rl2_env_id

    k = episodes_per_trial(family) if trial_episodes is None else trial_episodes
    if is_discrete(_family_env_id(family)):
        base = DISCRETE_PPO.replace(num_envs=16, rollout_steps=128, gamma=0.99, gae_lambda=0.95)
    else:
        base = CONTINUOUS_PPO.replace(num_envs=16, rollout_steps=200, normalize_reward=False)
    kind = model or RL2_KIND
    backbone = _with_model(base.model, kind).replace(**RL2_BACKBONES.get(kind, {}))
    return base.replace(env_id=rl2_env_id(family, k), eval_episodes=2, model=backbone)


MAML_SSM: dict[str, object] = {
    "inner__lr": 0.03,
    "inner__later_lr": 0.015,
    "model__learned_step_sizes": True,
}
"""The ssm's MAML settings on navigation-2d (``MAMLConfig.replace`` keywords): a small inner step with learned
per-tensor step sizes (Meta-SGD, Li et al. 2017), half of it after the first step. Chosen on validation goals
with selection seeds by ``ssm_backbone.py --uses maml`` (``benchmarks/results/ssm_backbone_maml_lr.md``,
``benchmarks/results/ssm_backbone_maml_lr2.md``, ``benchmarks/results/ssm_backbone_maml_lr3.md``,
``benchmarks/results/ssm_backbone_maml_lr4.md``); the later step by ``maml_inner_step.py``
(``benchmarks/results/maml_inner_step.md``)."""


def maml_recipe(family: str, model: ModelKind | None = None) -> MAMLConfig:
    """MAML by family: the inner step size and baseline are what the adaptation benchmarks chose.

    - navigation-2d: rllab's linear baseline with inner lr 1.0, because with the critic baseline one step
      barely adapts (``benchmarks/results/maml_navigation_variants.md``), 60 meta-iterations and, over
      several steps, half the step size after the first (the MAML paper's test protocol;
      ``benchmarks/results/meta_navigation.md``); the ssm takes :data:`MAML_SSM`: its post-LayerNorm
      features make the actor head's gradient an order of magnitude larger than the mlp's, so one step of
      1.0 from initialisation wrecks the policy (``benchmarks/results/maml_inner_step.md``);
    - discrete families: inner lr 0.1, outer lr 1e-3;
    - pendulum-physics: inner lr 0.03, outer lr 3e-4, because larger steps destroy the multi-task policy it
      starts from (``benchmarks/results/pendulum_adapt_lr.md``);
    - halfcheetah-dir: inner lr 1.0 with the linear baseline, which keeps improving within an hour on one
      core where the critic baseline stalls (``benchmarks/results/meta_cheetah.md``,
      ``benchmarks/results/meta_cheetah_linear.md``); the family has two tasks, both in every split, so this
      choice is made on the tasks it is reported on;
    - other continuous families: inner lr 1.0 with the critic baseline.
    """
    base = MAMLConfig(family=family, inner=AdaptConfig(steps=1, lr=1.0, episodes=20, baseline="critic"))
    if family == "navigation-2d":
        base = base.replace(inner__baseline="linear", inner__later_lr=0.5, meta_iterations=60)
        if model == "ssm":
            base = base.replace(**MAML_SSM)
    elif family == "halfcheetah-dir":
        base = base.replace(inner__baseline="linear")
    elif family == "pendulum-physics":
        base = base.replace(inner__lr=0.03, outer_lr=3e-4)
    elif is_discrete(_family_env_id(family)):
        base = base.replace(inner__lr=0.1, outer_lr=1e-3)
    return base.replace(model=_with_model(base.model, model))


def adapt_recipe(family: str, model: ModelKind | str | None = None) -> AdaptConfig:
    """Test-time adaptation on ``family``: the inner loop of its MAML recipe (for the ``model`` backbone, e.g. a
    loaded policy's ``describe()["kind"]``), three steps."""
    if model is not None and model not in MODEL_KINDS:
        raise ConfigError(f"unknown model kind {model!r}; known: {', '.join(MODEL_KINDS)}")
    return maml_recipe(family, cast(ModelKind | None, model)).inner.replace(steps=3)


@overload
def recipe(algo: Literal["ppo", "rl2"], target: str, model: ModelKind | None = None) -> PPOConfig: ...
@overload
def recipe(algo: Literal["pg"], target: str, model: ModelKind | None = None) -> PGConfig: ...
@overload
def recipe(algo: Literal["maml"], target: str, model: ModelKind | None = None) -> MAMLConfig: ...
@overload
def recipe(algo: Literal["adapt"], target: str, model: ModelKind | None = None) -> AdaptConfig: ...
def recipe(
    algo: Algo, target: str, model: ModelKind | None = None
) -> PPOConfig | PGConfig | MAMLConfig | AdaptConfig:
    """The named recipe ``algo`` for ``target`` (an env id for ppo/pg, a task family otherwise)."""
    if algo == "ppo":
        return ppo_recipe(target, model)
    if algo == "pg":
        return pg_recipe(target, model)
    if algo == "rl2":
        return rl2_recipe(target, model)
    if algo == "maml":
        return maml_recipe(target, model)
    if algo == "adapt":
        return adapt_recipe(target, model)
    raise ConfigError(f"unknown recipe {algo!r}; choose one of {', '.join(ALGOS)}")


__all__ = [
    "ALGOS",
    "CONTINUOUS_PPO",
    "DISCRETE_PPO",
    "MAML_SSM",
    "MEMORY_BACKBONES",
    "adapt_recipe",
    "episodes_per_trial",
    "is_discrete",
    "is_memory_task",
    "maml_recipe",
    "RL2_BACKBONES",
    "RL2_KIND",
    "pg_recipe",
    "ppo_recipe",
    "recipe",
    "rl2_recipe",
]
