"""MAML for reinforcement learning with any ActorCritic, recurrent policies included (Finn et al. 2017).

Per meta-iteration, for each of K tasks sampled from the training distribution (``inner`` is the
config's :class:`~ssm_metarl.config.AdaptConfig`):

    params_0 = theta                                             the meta-parameters, as a dict
    for i in 1..inner.steps:                                     fresh support data at every step
        D_i = inner.episodes whole episodes acting with params_{i-1}
        params_i = params_{i-1} - inner.lr * grad L_pg(params_{i-1}; D_i)
    Q = inner.episodes episodes acting with params_N             the query set
    L_outer = PPO-clip (or PG) loss of params_N on Q             differentiable in theta through the steps

and Adam takes a step on the mean outer loss over tasks. Second order keeps the graph of each inner
gradient; first order cuts it. With ``outer_algo="ppo"`` the outer loss is optimised for
``outer_epochs`` epochs, recomputing params_N from the *stored* support data each time (so the first
epoch's ratio is exactly 1). Recurrent policies are unrolled over whole episodes from the initial state.
The inner loss is REINFORCE with a detached baseline, so the inner step adapts the policy; the critic
learns only in the outer loss. The baseline is the critic (``inner.baseline="critic"``) or, as in the MAML paper's
code (rllab, pytorch-maml-rl), a linear regression of the returns on [obs, obs^2, t, t^2, t^3, 1] fitted on
the very episodes it scores (``baseline="linear"``, :func:`linear_baseline`; then the outer advantages use
it too): the critic sees only the observation, so on tasks whose identity is not in it (navigation: the
goal) it cannot follow the return's decay with time within the episode, which the linear fit can.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ssm_metarl.config import MAMLConfig
from ssm_metarl.envs.tasks import Task, TaskDistribution, get_family, set_tasks
from ssm_metarl.errors import SpaceError
from ssm_metarl.meta.functional import STEP_SIZES, Params, call, inner_update, params_of, snapshot
from ssm_metarl.models import ActorCritic, policy_from_config
from ssm_metarl.rl.evaluate import check_spaces
from ssm_metarl.rl.gae import discounted_returns, gae
from ssm_metarl.rl.losses import pg_loss, ppo_loss
from ssm_metarl.rl.rollout import Episodes, collect_episodes
from ssm_metarl.rl.run import Run, generator_state, make_optimizer, set_generator_state
from ssm_metarl.seeding import make_rng


def sample_episodes(
    envs, policy: ActorCritic, params: Params, tasks: list[Task], seed: int | None
) -> Episodes:
    """Act with ``params`` (no graph) for one whole episode per sub-env, each sub-env on its task."""
    set_tasks(envs, tasks)
    return collect_episodes(envs, snapshot(policy, params), seed=seed)


def _evaluate(policy: ActorCritic, params: Params, ep: Episodes) -> tuple[Tensor, Tensor, Tensor]:
    r = ep.rollout
    log_prob, entropy, value, _ = call(
        policy,
        params,
        "evaluate",
        r.obs.transpose(0, 1),
        r.state0,
        r.reset.transpose(0, 1),
        r.action.transpose(0, 1),
    )
    return log_prob, entropy, value  # (B, T) each


def linear_baseline(ep: Episodes, ret: Tensor, reg: float = 1e-5) -> Tensor:
    """rllab's LinearFeatureBaseline: least squares of ``ret`` (T, B) on [obs, obs^2, t, t^2, t^3, 1] with
    t = step / 100, over the valid steps of ``ep``; returns the fitted values (T, B), 0 on padding.

    Solved in float64 with a ridge term that grows tenfold while the system is singular.
    """
    obs = ep.rollout.obs.double()  # (T, B, D)
    T, B = ep.valid.shape
    t = (torch.arange(T, dtype=torch.float64, device=obs.device) / 100.0).view(T, 1, 1).expand(T, B, 1)
    valid = ep.valid.double().unsqueeze(-1)  # (T, B, 1)
    feats = (torch.cat([obs, obs.square(), t, t**2, t**3, torch.ones_like(t)], -1) * valid).reshape(T * B, -1)
    target = (ret.double() * valid[..., 0]).reshape(-1)
    gram, rhs = feats.T @ feats, feats.T @ target
    eye = torch.eye(gram.shape[0], dtype=torch.float64, device=obs.device)
    for _ in range(6):
        weights, info = torch.linalg.solve_ex(gram + reg * eye, rhs)
        if int(info) == 0 and torch.isfinite(weights).all():
            break
        reg *= 10.0
    else:
        raise RuntimeError("linear baseline: the feature system stays singular at ridge 1e1")
    return (feats @ weights).reshape(T, B).to(ret.dtype) * ep.valid.to(ret.dtype)


def inner_loss(
    policy: ActorCritic, params: Params, ep: Episodes, gamma: float, baseline: str = "critic"
) -> Tensor:
    """REINFORCE with a detached baseline (the critic, or :func:`linear_baseline`) over the valid steps of
    whole episodes."""
    r = ep.rollout
    ret = discounted_returns(r.reward, r.terminated, r.truncated, None, None, gamma)  # (T, B) no bootstrap
    log_prob, _, value = _evaluate(policy, params, ep)
    base = _baseline_values(ep, ret, value, baseline)
    loss, _ = pg_loss(log_prob, (ret - base).T, None, 0.0, mask=ep.valid.T, norm_adv=True)
    return loss


def _baseline_values(ep: Episodes, ret: Tensor, value: Tensor, baseline: str) -> Tensor:
    """(T, B) detached baseline values: the critic's ``value`` (B, T), or the linear fit to ``ret`` (T, B)."""
    if baseline == "critic":
        return value.detach().T
    if baseline == "linear":
        return linear_baseline(ep, ret)
    raise ValueError(f"baseline must be 'critic' or 'linear', got {baseline!r}")


def adapt(
    policy: ActorCritic,
    params: Params,
    support: list[Episodes],
    inner_lr: float,
    gamma: float,
    first_order: bool,
    baseline: str = "critic",
    which: str = "all",
) -> Params:
    """Replay the inner loop on stored support sets: one gradient step per set (of the parameters ``which``
    names: ``AdaptConfig.params``)."""
    for ep in support:
        loss = inner_loss(policy, params, ep, gamma, baseline)
        params = inner_update(params, loss, inner_lr, first_order, which)
    return params


def outer_loss(
    policy: ActorCritic, params: Params, query: Episodes, cfg: MAMLConfig
) -> tuple[Tensor, dict[str, float]]:
    """PPO-clip (or PG) loss of the adapted ``params`` on the query episodes, plus the value loss."""
    r = query.rollout
    zeros = torch.zeros_like(r.last_value)
    value0 = r.value
    if cfg.inner.baseline == "linear":
        ret = discounted_returns(r.reward, r.terminated, r.truncated, None, None, cfg.gamma)
        value0 = linear_baseline(query, ret)
    advantage, ret = gae(
        r.reward,
        value0,
        r.terminated,
        r.truncated,
        torch.zeros_like(r.reward),
        zeros,
        cfg.gamma,
        cfg.gae_lambda,
    )
    log_prob, entropy, value = _evaluate(policy, params, query)
    mask = query.valid.T
    if cfg.outer_algo == "pg":
        return pg_loss(
            log_prob,
            advantage.T,
            entropy,
            cfg.ent_coef,
            value=value,
            ret=ret.T,
            vf_coef=cfg.vf_coef,
            mask=mask,
            norm_adv=True,
        )
    return ppo_loss(
        log_prob,
        r.log_prob.T,
        advantage.T,
        value,
        r.value.T,
        ret.T,
        entropy,
        clip_coef=cfg.clip_coef,
        vf_coef=cfg.vf_coef,
        ent_coef=cfg.ent_coef,
        clip_vloss=False,
        mask=mask,
    )


def _group(name: str) -> str:
    return "step_size" if name == STEP_SIZES else "critic" if name.startswith("critic") else "actor"


def clip_grad_norm_per_head(policy: ActorCritic, max_norm: float) -> dict[str, Tensor]:
    """Clip the actor's, the critic's and the learned step sizes' gradient norms separately.

    Returns here are unnormalised (about -50 on navigation-2d), so the value loss's gradient is orders of
    magnitude larger than the policy's; one global clip would shrink the policy step to almost nothing
    (an approx-KL of about 1e-4 per meta-update on navigation-2d).
    """
    groups: dict[str, list[Tensor]] = {}
    for n, p in policy.named_parameters():
        if p.grad is not None:
            groups.setdefault(_group(n), []).append(p)
    return {
        f"{name}_grad_norm": torch.nn.utils.clip_grad_norm_(groups[name], max_norm)
        for name in ("actor", "critic", "step_size")
        if name in groups
    }


def meta_optimizer(policy: ActorCritic, cfg: MAMLConfig) -> torch.optim.Adam:
    """Adam over the meta-parameters: ``cfg.outer_lr``, and ``cfg.step_size_lr`` for learned step sizes."""
    named = dict(policy.named_parameters())
    optimizer = make_optimizer([p for n, p in named.items() if n != STEP_SIZES], lr=cfg.outer_lr)
    if STEP_SIZES in named:
        optimizer.add_param_group({"params": [named[STEP_SIZES]], "lr": cfg.step_size_lr})
    return optimizer


@dataclass
class MetaTrainResult:
    policy: ActorCritic
    metrics: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    env_steps: int = 0


def build_meta_policy(cfg: MAMLConfig, dist: TaskDistribution) -> ActorCritic:
    env = dist.make_env(dist.train[0])
    try:
        return policy_from_config(cfg.model, env.observation_space, env.action_space)
    finally:
        env.close()


def _collect_task(
    envs: Any, policy: ActorCritic, task: Task, cfg: MAMLConfig, rng: np.random.Generator
) -> tuple[list[Episodes], Episodes]:
    """Support sets step by step (fresh episodes from each adapted parameter set), then the query set."""
    inner = cfg.inner
    same = [task] * inner.episodes
    params = {k: v.detach() for k, v in params_of(policy).items()}
    support: list[Episodes] = []
    for _ in range(inner.steps):
        ep = sample_episodes(envs, policy, params, same, seed=int(rng.integers(2**31)))
        support.append(ep)
        params = {k: v.detach().requires_grad_(True) for k, v in params.items()}
        params = inner_update(
            params, inner_loss(policy, params, ep, inner.gamma, inner.baseline), inner.lr, True, inner.params
        )
    return support, sample_episodes(envs, policy, params, same, seed=int(rng.integers(2**31)))


def meta_update(
    policy: ActorCritic,
    optimizer: torch.optim.Optimizer,
    batches: list[tuple[list[Episodes], Episodes]],
    cfg: MAMLConfig,
    run: Run,
    iteration: int,
) -> dict[str, float]:
    """The outer step(s) on the tasks' (support, query) ``batches``: per epoch, the mean outer loss over
    tasks of the parameters adapted on each support set; returns the last epoch's mean stats."""
    inner = cfg.inner
    stats_sum: dict[str, float] = {}
    for epoch in range(1 if cfg.outer_algo == "pg" else cfg.outer_epochs):
        where = f"meta-iteration {iteration}, epoch {epoch + 1}"
        optimizer.zero_grad(set_to_none=True)
        stats_sum = {}
        for support, query in batches:
            adapted = adapt(
                policy,
                params_of(policy),
                support,
                inner.lr,
                inner.gamma,
                cfg.first_order,
                inner.baseline,
                inner.params,
            )
            loss, stats = outer_loss(policy, adapted, query, cfg)
            run.guard(where, outer_loss=loss)
            (loss / len(batches)).backward()
            for k, v in stats.items():
                stats_sum[k] = stats_sum.get(k, 0.0) + float(v) / len(batches)
        norms = clip_grad_norm_per_head(policy, cfg.max_grad_norm)
        run.guard(where, **norms)
        optimizer.step()
    run.guard_parameters(policy, f"meta-iteration {iteration}")
    return stats_sum


def train_maml(
    cfg: MAMLConfig,
    policy: ActorCritic | None = None,
    callback: Callable[[dict[str, Any]], bool | None] | None = None,
    task_source: Any = None,
    algo: str = "maml",
) -> MetaTrainResult:
    """Meta-train ``policy`` (or a new one) with MAML on ``cfg.family``'s training distribution.

    ``task_source`` (anything with ``sample(rng, n) -> list[Task]``, e.g. a ``TaskBatch``) replaces the
    family's own sampler; its tasks must belong to ``cfg.family``.
    """
    run = Run(algo, cfg)
    rng = make_rng(cfg.run.seed)
    dist = get_family(cfg.family)
    policy = (policy or build_meta_policy(cfg, dist)).to(cfg.run.device)
    run.guard_parameters(policy, "the start of training")
    optimizer = meta_optimizer(policy, cfg)
    envs = dist.make_vec_env(dist.train[:1] * cfg.inner.episodes, seed=cfg.run.seed, fast=True)
    try:
        check_spaces(policy, envs, cfg.family)
    except SpaceError:
        envs.close()
        raise
    result = MetaTrainResult(policy)
    resumed = run.resume(policy, optimizer)
    if resumed is not None:
        result.env_steps = int(resumed.state["env_steps"])
        set_generator_state(rng, resumed.state["task_rng"])

    for it in run.updates(cfg.meta_iterations, callback=callback, unit="meta-it", show="return_after"):
        tasks = (task_source or dist).sample(rng, cfg.meta_batch_size)
        batches = [_collect_task(envs, policy, task, cfg, rng) for task in tasks]
        pre = [support[0].mean_return if support else query.mean_return for support, query in batches]
        post = [query.mean_return for _, query in batches]
        result.env_steps += sum(e.num_steps for support, query in batches for e in [*support, query])
        stats = meta_update(policy, optimizer, batches, cfg, run, it + 1)

        row = run.row(iteration=it + 1, env_steps=result.env_steps) | {
            "return_before": float(np.mean(pre)),
            "return_after": float(np.mean(post)),
            **stats,
        }
        run.end_update(row, {"env_steps": result.env_steps, "task_rng": generator_state(rng)})

    result.seconds = run.seconds
    result.metrics = run.metrics.rows
    run.finish(policy, {"family": cfg.family, "env_steps": result.env_steps})
    envs.close()
    return result


def train_multitask(cfg: MAMLConfig, policy: ActorCritic | None = None, **kwargs: Any) -> MetaTrainResult:
    """The "multi-task training without meta-learning" baseline: the same loop, data and outer loss as
    :func:`train_maml` with no inner step, so the policy is trained for good returns on average over tasks
    rather than for returns after adaptation."""
    return train_maml(cfg.replace(inner__steps=0), policy=policy, algo="multitask", **kwargs)
