"""RL² training diagnostics on 2D navigation: why the SSM backbones learn the in-context skill slower (issue 34).

    python benchmarks/rl2_diagnostics.py --models gated_ssm gru transformer --seeds 0 1 2
    python benchmarks/rl2_diagnostics.py --models ssm --seeds 0 1 2 --name rl2_diagnostics_b \
        --merge benchmarks/results/rl2_diagnostics.json          # add runs to an earlier file
    python benchmarks/rl2_diagnostics.py --models --merge results/a.json results/b.json \
        --notes notes.md                                          # the table and plot from earlier runs only

Each run is ``meta_navigation.py``'s RL² run to the digit (``recipe("rl2", "navigation-2d", model)`` with
its :data:`~ssm_metarl.recipes.RL2_BACKBONES` settings, trials of 4 episodes, ``--steps`` env steps, the same
seed and the same evaluation on the 20 test goals), and logs per PPO update:

- ``a``: the recurrence coefficients of every recurrent layer of the actor and of the separate critic, as
  quantiles (min, 10, 50, 90, max). ``a_static``: the parameters' own eigenvalues: the LRU's ``|lambda|``
  (``ssm``) and, for the gated ssm, ``sigmoid(lambda)^c``, its fastest decay (``a_t`` at recurrence gate 1).
  ``a_data``: the coefficient applied on this update's rollout (before the update), over all (env, step,
  channel): the gated ssm's ``a_t``, the gru's update gate ``z_t`` (``h_t = z_t h_{t-1} + (1 - z_t) n_t``),
  the lstm's forget gate ``f_t``; the LRU's is its static ``|lambda|``; the transformer has none.
  ``frac_a_above_0.99``: the share of data coefficients above 0.99 (memory over 100 steps: an inner episode);
- ``grad``: gradient norms before clipping per parameter group, mean over the update's minibatches:
  ``recurrence`` (LRU nu/theta/gamma, the gated ssm's lambda and its recurrence- and input-gate rows,
  the gru/lstm hidden-to-hidden weights, the transformer's attention), ``projections`` (the rest of the actor's
  backbone), ``heads`` (policy head, log-std), ``critic_recurrence`` and ``critic`` (the rest of the critic:
  its backbone and value head); ``grad_total`` and ``clipped_frac`` (share of minibatches whose total norm
  exceeded ``max_grad_norm``, i.e. were clipped); ``step``: the update's parameter change per group,
  ``||delta theta|| / ||theta||``;
- ``value_loss``, ``explained_variance`` (the rollout's values against its GAE returns, as CleanRL logs it)
  overall and per inner episode, ``entropy`` (training statistics) and ``entropy_ep`` (per inner episode, on the
  rollout), ``approx_kl``, ``clipfrac``, and the return curve: ``return_mean20`` (trials) and
  ``return_ep`` and ``length_ep`` (each inner episode's reward and steps in the rollout over the number of
  its starts there: a ratio estimate, noisy per update, unbiased over updates; an episode ends early at the
  goal, so the length is the in-context gain's clearest sign). Runs of commit efa4ba5 logged ``return_ep`` as
  the mean reward per step times 100, which overstates the loss of episodes that end early at the goal:
  read their per-episode split only through ``return_mean20``. The policy's entropy is a state-independent
  log-std, so ``entropy_ep`` is the same in every episode: exploration within a trial shows in the returns
  and lengths, not there.

How it hooks in: :func:`~ssm_metarl.meta.rl2.train_rl2`'s ``callback`` closes each update's row; what the
callback cannot see (the rollout, the returns, the gradients) is read by wrapping
``ssm_metarl.rl.ppo.ppo_update`` for the duration of the run (:func:`instrumented`): the wrapper runs one extra
no-grad forward over the rollout, registers gradient hooks and calls the real update unchanged. It draws no
random numbers, so a run reproduces the uninstrumented run exactly.

Writes results/<name>.{json,md,png}; ``--notes`` appends a text (the findings) to the markdown.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import multiprocessing as mp
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from _common import (
    RESULTS_DIR,
    add_merge_arguments,
    backbone_label,
    backbone_record,
    command_line,
    machine_info,
    markdown_table,
    merge_runs,
    merged_markdown,
    provenance,
    start_run,
    write_results,
)

FAMILY = "navigation-2d"
EPISODES_PER_TRIAL = 4
HORIZON = 100
QUANTILES = (0.0, 0.1, 0.5, 0.9, 1.0)
GROUPS = ("recurrence", "projections", "heads", "critic_recurrence", "critic")


def _r(x: float, digits: int = 5) -> float | None:
    """A float rounded to ``digits`` significant digits (None for NaN), to keep the JSON small."""
    x = float(x)
    if not math.isfinite(x):
        return None
    return float(f"{x:.{digits}g}")


def _quantiles(x: Any) -> list[float | None]:
    import torch

    flat = x.detach().reshape(-1).float()
    if flat.numel() > 1_000_000:  # torch.quantile's limit is 16M; a strided subsample is plenty
        flat = flat[:: flat.numel() // 1_000_000 + 1]
    q = torch.quantile(flat, torch.tensor(QUANTILES, dtype=flat.dtype))
    return [_r(v, 7) for v in q.tolist()]


# ----- parameter groups ---------------------------------------------------------------------------------


def parameter_groups(policy: Any) -> list[tuple[str, str, Any, slice | None]]:
    """(group, name, parameter, row slice or None) for every trained parameter of an ActorCritic: see the
    module docstring. The gated ssm's ``proj`` holds [W_u; W_r; W_i]: its u rows are projections, its gate
    rows recurrence."""
    from ssm_metarl.models.gated_ssm import RGLRULayer

    gated_proj = {}
    for mname, m in policy.named_modules():
        if isinstance(m, RGLRULayer):
            gated_proj[f"{mname}.proj.weight"] = m.state_dim
            gated_proj[f"{mname}.proj.bias"] = m.state_dim
    out: list[tuple[str, str, Any, slice | None]] = []
    for name, p in policy.named_parameters():
        if not p.requires_grad or name == "inner_log_lr":
            continue
        if name.startswith("critic_backbone."):
            critic, local = True, name.removeprefix("critic_backbone.")
        elif name.startswith("backbone."):
            critic, local = False, name.removeprefix("backbone.")
        else:  # actor / critic heads, log_std
            out.append(("critic" if name.startswith("critic.") else "heads", name, p, None))
            continue
        rec, rest = ("critic_recurrence", "critic") if critic else ("recurrence", "projections")
        if name in gated_proj:
            n = gated_proj[name]
            out.append((rest, name, p, slice(0, n)))
            out.append((rec, name, p, slice(n, 3 * n)))
        elif is_recurrence(local):
            out.append((rec, name, p, None))
        else:
            out.append((rest, name, p, None))
    return out


def is_recurrence(local: str) -> bool:
    """Whether a backbone parameter (its name inside the backbone) belongs to the recurrence: the LRU's
    nu/theta/gamma, the gated ssm's lambda, an RNN's hidden-to-hidden weights, a transformer's attention."""
    leaf = local.rsplit(".", 1)[-1]
    if leaf in ("nu_log", "theta_log", "gamma_log", "lam", "rel_bias") or leaf.startswith(
        ("weight_hh", "bias_hh")
    ):
        return True
    parts = local.split(".")
    return (
        ("attn" in parts or any(k in parts for k in ("q", "kv", "proj")))
        and "rnn" not in parts
        and "lru" not in parts
    )


def static_eigenvalues(policy: Any) -> dict[str, Any]:
    """Per recurrent layer (``actor.0``, ``critic.1``, ...), the parameters' own eigenvalue magnitudes (N,):
    the LRU's |lambda| and the gated ssm's sigmoid(lambda)^c (its fastest decay)."""
    import torch
    import torch.nn.functional as F

    from ssm_metarl.models.gated_ssm import GATE_SCALE, RGLRULayer
    from ssm_metarl.models.ssm import LRULayer

    out = {}
    with torch.no_grad():
        for side, bb in (("actor", policy.backbone), ("critic", policy.critic_backbone)):
            if bb is None:
                continue
            i = 0
            for m in bb.modules():
                if isinstance(m, LRULayer):
                    out[f"{side}.{i}"] = m.lam().abs()
                    i += 1
                elif isinstance(m, RGLRULayer):
                    out[f"{side}.{i}"] = torch.exp(-GATE_SCALE * F.softplus(-m.lam))
                    i += 1
    return out


# ----- the instrumentation ------------------------------------------------------------------------------


class Diagnostics:
    """Collects one row of diagnostics per PPO update (see the module docstring)."""

    def __init__(self, episodes_per_trial: int = EPISODES_PER_TRIAL) -> None:
        self.k = episodes_per_trial
        self.rows: list[dict[str, Any]] = []
        self.policy: Any = None
        self._handles: list[Any] = []
        self._groups: list[tuple[str, str, Any, slice | None]] = []
        self._by_param: dict[int, list[tuple[str, slice | None]]] = {}
        self._cur: dict[str, float] = {}
        self._mb: list[dict[str, float]] = []
        self._capture = False
        self._data_a: dict[str, Any] = {}
        self._episode: Any = None  # (B,) inner-episode index carried across rollouts
        self._pending: dict[str, Any] | None = None
        self.max_grad_norm = float("inf")

    # hooks ------------------------------------------------------------------------------------------
    def attach(self, policy: Any, optimizer: Any) -> None:
        from ssm_metarl.models.gated_ssm import RGLRULayer
        from ssm_metarl.models.rnn import GRU, LSTM

        self.policy = policy
        self._groups = parameter_groups(policy)
        for group, _, p, slc in self._groups:
            self._by_param.setdefault(id(p), []).append((group, slc))
        seen: set[int] = set()
        for _, _, p, _ in self._groups:
            if id(p) not in seen:
                seen.add(id(p))
                self._handles.append(p.register_post_accumulate_grad_hook(self._grad_hook))
        self._handles.append(optimizer.register_step_pre_hook(self._step_hook))
        for side, bb in (("actor", policy.backbone), ("critic", policy.critic_backbone)):
            if bb is None:
                continue
            i = 0
            for m in bb.modules():
                if isinstance(m, (RGLRULayer, GRU, LSTM)):  # a hooked gated block takes its torch path
                    self._handles.append(m.register_forward_hook(self._forward_hook(f"{side}.{i}")))
                    i += 1

    def detach(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def _grad_hook(self, p: Any) -> None:
        g = p.grad.detach()
        for group, slc in self._by_param.get(id(p), []):
            sq = float((g if slc is None else g[slc]).float().pow(2).sum())
            self._cur[group] = self._cur.get(group, 0.0) + sq

    def _step_hook(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        self._mb.append(dict(self._cur))
        self._cur = {}

    def _forward_hook(self, key: str) -> Any:
        def hook(module: Any, inputs: Any, output: Any) -> None:
            if self._capture:
                self._data_a[key] = data_coefficients(module, inputs, output)

        return hook

    # per update ---------------------------------------------------------------------------------------
    def _inner_episode(self, rollout: Any) -> Any:
        """(T, B) index of the inner episode each step belongs to: 0 at a trial's reset, +1 at each step whose
        observation carries the ``done`` flag (its last feature; normalised, the flag is far above 0)."""
        import torch

        T, B = rollout.reset.shape
        ep = self._episode if self._episode is not None else torch.zeros(B, dtype=torch.long)
        flag = rollout.obs[..., -1] > 1.0
        out = torch.empty(T, B, dtype=torch.long)
        for t in range(T):
            ep = torch.where(rollout.reset[t], torch.zeros_like(ep), ep + flag[t].long())
            out[t] = ep
        self._episode = ep
        return out.clamp(max=self.k - 1)

    def before(self, policy: Any, rollout: Any, ret: Any) -> dict[str, Any]:
        import torch

        from ssm_metarl.rl.losses import explained_variance

        rec: dict[str, Any] = {}
        ep = self._inner_episode(rollout)
        with torch.no_grad():
            self._capture, self._data_a = True, {}
            try:
                _, entropy, _, _ = policy.evaluate(
                    rollout.obs.transpose(0, 1),
                    rollout.state0,
                    rollout.reset.transpose(0, 1),
                    rollout.action.transpose(0, 1),
                )
            finally:
                self._capture = False
            entropy = entropy.T  # (T, B)
            rec["explained_variance"] = _r(explained_variance(rollout.value, ret))
            ev_ep, ent_ep, ret_ep, len_ep = [], [], [], []
            for k in range(self.k):
                m = ep == k
                if int(m.sum()) < 2:
                    ev_ep.append(None), ent_ep.append(None), ret_ep.append(None), len_ep.append(None)
                    continue
                ev_ep.append(_r(explained_variance(rollout.value, ret, m)))
                ent_ep.append(_r(entropy[m].mean()))
                starts = int((m & (rollout.reset | (rollout.obs[..., -1] > 1.0))).sum())
                ret_ep.append(_r(rollout.reward[m].sum() / starts) if starts else None)
                len_ep.append(_r(m.sum() / starts) if starts else None)
            rec["explained_variance_ep"], rec["entropy_ep"], rec["return_ep"] = ev_ep, ent_ep, ret_ep
            rec["length_ep"] = len_ep
            rec["value_mean"], rec["ret_mean"] = _r(rollout.value.mean()), _r(ret.mean())
            rec["ret_std"] = _r(ret.std())
        a_data = {}
        for key, a in sorted(self._data_a.items()):
            a_data[key] = {"q": _quantiles(a), "frac_above_0.99": _r((a > 0.99).float().mean())}
        rec["a_data"] = a_data
        self._theta0 = {name: p.detach().clone() for _, name, p, _ in self._groups}
        self._mb, self._cur = [], {}
        return rec

    def after(self, rec: dict[str, Any]) -> None:
        import torch

        mb = self._mb
        norms = {g: [math.sqrt(m.get(g, 0.0)) for m in mb] for g in GROUPS}
        totals = [math.sqrt(sum(m.values())) for m in mb]
        rec["grad"] = {g: _r(np.mean(v)) if v else None for g, v in norms.items()}
        rec["grad_max"] = {g: _r(np.max(v)) if v else None for g, v in norms.items()}
        rec["grad_total"] = _r(np.mean(totals)) if totals else None
        rec["clipped_frac"] = _r(np.mean([t > self.max_grad_norm for t in totals])) if totals else None
        rec["minibatches"] = len(mb)
        num = dict.fromkeys(GROUPS, 0.0)
        den = dict.fromkeys(GROUPS, 0.0)
        with torch.no_grad():
            for group, name, p, slc in self._groups:
                p0, p1 = self._theta0[name], p.detach()
                if slc is not None:
                    p0, p1 = p0[slc], p1[slc]
                num[group] += float((p1 - p0).float().pow(2).sum())
                den[group] += float(p0.float().pow(2).sum())
        rec["step"] = {g: _r(math.sqrt(num[g] / den[g])) if den[g] > 0 else None for g in GROUPS}
        rec["a_static"] = {k: _quantiles(v) for k, v in static_eigenvalues(self.policy).items()}
        self._pending = rec

    def callback(self, row: dict[str, Any]) -> None:
        """:func:`train_rl2`'s callback: joins the loop's row for this update with what the wrapper measured."""
        keep = (
            "update",
            "global_step",
            "seconds",
            "return_mean20",
            "value_loss",
            "policy_loss",
            "entropy",
            "approx_kl",
            "clipfrac",
            "grad_norm",
        )
        out = {k: (_r(row[k]) if k not in ("update", "global_step") else row[k]) for k in keep if k in row}
        out.update(self._pending or {})
        self._pending = None
        self.rows.append(out)


def data_coefficients(module: Any, inputs: Any, output: Any) -> Any:
    """The recurrence coefficient a layer applied on a batch, from its forward hook: the gated ssm's a_t
    (B, T, N), the gru's update gate z_t or the lstm's forget gate f_t (B, T, H) of the first layer."""
    import torch

    from ssm_metarl.models.gated_ssm import RGLRULayer

    if isinstance(module, RGLRULayer):
        a, _ = module.coefficients(inputs[0])
        return a
    x, state, reset = inputs
    y = output[0]  # (B, T, H): the top layer's h_t
    rnn = module.rnn
    H = rnn.hidden_size
    if rnn.num_layers != 1:  # h_{t-1} of the first layer is not in the output: the input half only
        y = torch.zeros_like(y)
    h_first = state[0][:, 0]  # (B, H): the gru's h, the lstm's h of (h, c)
    h_prev = torch.cat([h_first[:, None], y[:, :-1]], dim=1)  # (B, T, H)
    h_prev = h_prev.masked_fill(reset.bool()[..., None], 0.0)
    w_ih, w_hh = rnn.weight_ih_l0[H : 2 * H], rnn.weight_hh_l0[H : 2 * H]  # z (gru) / f (lstm) rows
    b = rnn.bias_ih_l0[H : 2 * H] + rnn.bias_hh_l0[H : 2 * H]
    return torch.sigmoid(x @ w_ih.T + h_prev @ w_hh.T + b)


@contextlib.contextmanager
def instrumented(diag: Diagnostics) -> Iterator[Diagnostics]:
    """Within the block, ``ssm_metarl.rl.ppo.ppo_update`` is wrapped to feed ``diag`` (restored on exit)."""
    from ssm_metarl.rl import ppo

    real = ppo.ppo_update

    def wrapped(policy, optimizer, rollout, advantage, ret, cfg, run, update):  # type: ignore[no-untyped-def]
        if diag.policy is None:
            diag.max_grad_norm = cfg.max_grad_norm
            diag.attach(policy, optimizer)
        rec = diag.before(policy, rollout, ret)
        stats = real(policy, optimizer, rollout, advantage, ret, cfg, run, update)
        diag.after(rec)
        return stats

    ppo.ppo_update = wrapped
    try:
        yield diag
    finally:
        ppo.ppo_update = real
        diag.detach()


# ----- one run ------------------------------------------------------------------------------------------


def rl2_config(model: str, seed: int, steps: int, **overrides: Any) -> Any:
    """meta_navigation.py's RL² config for ``model`` (``overrides``: PPOConfig.replace keywords)."""
    from ssm_metarl.envs.trial import rl2_env_id
    from ssm_metarl.recipes import recipe

    cfg = recipe("rl2", FAMILY, model).replace(
        env_id=rl2_env_id(FAMILY, EPISODES_PER_TRIAL), run__seed=seed, run__progress=False, total_steps=steps
    )
    return cfg.replace(**overrides) if overrides else cfg


def run_one(job: dict[str, Any]) -> dict[str, Any]:
    import torch

    from ssm_metarl.envs.tasks import get_family
    from ssm_metarl.meta.rl2 import evaluate_in_context, train_rl2

    torch.set_num_threads(1)
    cfg = rl2_config(job["model"], job["seed"], job["steps"], **job.get("ppo", {}))
    if job.get("overrides"):
        cfg = cfg.replace(model=cfg.model.replace(**job["overrides"]))
    t0 = time.perf_counter()
    diag = Diagnostics()
    with instrumented(diag):
        result = train_rl2(cfg, callback=diag.callback)
    train_s = time.perf_counter() - t0
    tasks = get_family(FAMILY).test
    per_episode = evaluate_in_context(
        result.policy, FAMILY, tasks, EPISODES_PER_TRIAL, seeds=(10_000 + job["seed"],)
    )
    return {
        **job,
        "backbone": backbone_record(cfg.model),
        "returns": per_episode.seed_means()[0].tolist(),  # test goals, episode 1..4 of a trial
        "train_seconds": train_s,
        "env_steps": cfg.total_steps,
        "max_grad_norm": cfg.max_grad_norm,
        "diagnostics": diag.rows,
    }


def run_key(r: dict[str, Any]) -> tuple[Any, ...]:
    return r["model"], r["seed"], r["steps"], tuple(sorted(r["backbone"].items()))


# ----- summary ------------------------------------------------------------------------------------------


def _late(rows: list[dict[str, Any]], fn: Any, frac: float = 0.1) -> float | None:
    """Mean of ``fn(row)`` over the last ``frac`` of the updates (None where undefined)."""
    n = max(1, int(len(rows) * frac))
    vals = [fn(r) for r in rows[-n:]]
    vals = [v for v in vals if v is not None]
    return float(np.mean(vals)) if vals else None


def _early(rows: list[dict[str, Any]], fn: Any, frac: float = 0.1) -> float | None:
    n = max(1, int(len(rows) * frac))
    vals = [fn(r) for r in rows[:n]]
    vals = [v for v in vals if v is not None]
    return float(np.mean(vals)) if vals else None


def _a_layer(r: dict[str, Any]) -> dict[str, Any]:
    """The data coefficients of a row where the layer has them, else the static ones (the LRU)."""
    return r.get("a_data") or {k: {"q": v} for k, v in r.get("a_static", {}).items()}


def run_summary(run: dict[str, Any]) -> dict[str, Any]:
    rows = run["diagnostics"]
    total = lambda r: r.get("grad_total")  # noqa: E731

    def share(g: str) -> Any:
        def f(r: dict[str, Any]) -> float | None:
            if not r.get("grad") or not r.get("grad_total"):
                return None
            return (r["grad"][g] or 0.0) ** 2 / r["grad_total"] ** 2

        return f

    a = _a_layer(rows[-1]) if rows else {}
    actor0 = a.get("actor.0", {}).get("q")
    return {
        "model": run["model"],
        "seed": run["seed"],
        "backbone": backbone_label(run["backbone"]),
        "episode_2": run["returns"][1],
        "gain_1_to_2": run["returns"][0] - run["returns"][1],
        "return_mean20_end": _late(rows, lambda r: r.get("return_mean20")),
        "ev_early": _early(rows, lambda r: r.get("explained_variance")),
        "ev_end": _late(rows, lambda r: r.get("explained_variance")),
        "ev_ep1_end": _late(rows, lambda r: r["explained_variance_ep"][0]),
        "ev_ep4_end": _late(rows, lambda r: r["explained_variance_ep"][-1]),
        "value_loss_end": _late(rows, lambda r: r.get("value_loss")),
        "entropy_end": _late(rows, lambda r: r.get("entropy")),
        "entropy_ep1_end": _late(rows, lambda r: r["entropy_ep"][0]),
        "approx_kl_mean": _late(rows, lambda r: r.get("approx_kl"), 1.0),
        "grad_total_mean": _late(rows, total, 1.0),
        "clipped_frac_mean": _late(rows, lambda r: r.get("clipped_frac"), 1.0),
        "recurrence_grad_share": _late(rows, share("recurrence"), 1.0),
        "critic_grad_share": _late(rows, share("critic"), 1.0),
        "recurrence_step_mean": _late(rows, lambda r: r["step"]["recurrence"], 1.0),
        "projections_step_mean": _late(rows, lambda r: r["step"]["projections"], 1.0),
        "actor0_a_q_end": actor0,
        "actor0_a_median_start": (_a_layer(rows[0]).get("actor.0", {}).get("q") or [None] * 3)[2]
        if rows
        else None,
        "actor_frac_a_above_099_end": _late(
            rows,
            lambda r: (
                np.mean(
                    [v["frac_above_0.99"] for k, v in r.get("a_data", {}).items() if k.startswith("actor")]
                )
                if any(k.startswith("actor") for k in r.get("a_data", {}))
                else None
            ),
        ),
        "train_minutes": run["train_seconds"] / 60,
    }


def _f(x: Any, digits: int = 2) -> str:
    if x is None:
        return "–"
    if isinstance(x, list):
        return "/".join(_f(v, 3) for v in x)
    return f"{x:.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="*", default=["gated_ssm", "ssm", "gru", "transformer"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=600_000)
    parser.add_argument("--jobs", type=int, default=1, help="parallel processes (one torch thread each)")
    parser.add_argument("--notes", default=None, help="a markdown file appended to the .md (the findings)")
    add_merge_arguments(parser, "rl2_diagnostics")
    args = start_run(parser)

    jobs = [{"model": m, "seed": s, "steps": args.steps} for s in args.seeds for m in args.models]
    t0 = time.perf_counter()
    runs: list[dict[str, Any]] = []
    if jobs:
        if args.jobs == 1:
            runs = [run_one(j) for j in jobs]
        else:
            with mp.get_context("spawn").Pool(args.jobs) as pool:
                runs = pool.map(run_one, jobs, chunksize=1)
    minutes_total = (time.perf_counter() - t0) / 60
    runs, merged_from = merge_runs(runs, args.merge, run_key)
    runs.sort(
        key=lambda r: (
            list(dict.fromkeys(["gated_ssm", "ssm", "gru", "lstm", "transformer"])).index(r["model"])
            if r["model"] in ("gated_ssm", "ssm", "gru", "lstm", "transformer")
            else 9,
            r["seed"],
        )
    )
    summaries = [run_summary(r) for r in runs]

    by_model: dict[str, list[dict[str, Any]]] = {}
    for s in summaries:
        by_model.setdefault(s["model"], []).append(s)
    headline: dict[str, Any] = {}
    for m, ss in by_model.items():
        headline[f"{m}_episode_2_mean"] = float(np.mean([s["episode_2"] for s in ss]))
        headline[f"{m}_episode_2_worst"] = float(np.min([s["episode_2"] for s in ss]))
        for key in (
            "ev_end",
            "entropy_end",
            "clipped_frac_mean",
            "recurrence_grad_share",
            "recurrence_step_mean",
        ):
            vals = [s[key] for s in ss if s[key] is not None]
            headline[f"{m}_{key}"] = float(np.mean(vals)) if vals else None
    payload = {
        "headline": headline,
        "summaries": summaries,
        "runs": runs,
        "config": {
            "family": FAMILY,
            "episodes_per_trial": EPISODES_PER_TRIAL,
            "eval_tasks": "test (20 goals), seed 10000 + training seed, as meta_navigation.py",
            "steps": sorted({r["steps"] for r in runs}),
            "quantiles": list(QUANTILES),
            "groups": list(GROUPS),
            "parallel_jobs": args.jobs,
        },
        "minutes_total": minutes_total,
        "merged_from": merged_from,
        "seeds": sorted({r["seed"] for r in runs}),
        **provenance(),
    }
    table = [
        [
            s["backbone"],
            s["seed"],
            _f(s["episode_2"], 1),
            _f(s["return_mean20_end"], 1),
            _f(s["ev_early"]),
            _f(s["ev_end"]),
            _f(s["ev_ep1_end"]),
            _f(s["ev_ep4_end"]),
            _f(s["entropy_end"]),
            _f(s["entropy_ep1_end"]),
            _f(s["approx_kl_mean"], 4),
            _f(s["grad_total_mean"]),
            _f(s["clipped_frac_mean"]),
            _f(s["recurrence_grad_share"]),
            _f(s["recurrence_step_mean"], 4),
            _f(s["projections_step_mean"], 4),
            _f(s["actor0_a_median_start"], 3),
            _f(s["actor0_a_q_end"]),
            _f(s["actor_frac_a_above_099_end"]),
            _f(s["train_minutes"], 1),
        ]
        for s in summaries
    ]
    md = (
        f"## RL² diagnostics on 2D navigation ({len(runs)} runs, {sorted({r['steps'] for r in runs})} env steps)\n\n"
        "Per run: episode-2 return on the 20 test goals (as `meta_navigation.py`); the rest from the training "
        "log, *early* = first 10% of the updates, *end* = last 10%, *mean* = over all updates. EV: explained "
        "variance of the rollout's values against its GAE returns (ep1 / ep4: steps of inner episode 1 / 4). "
        "Grad: pre-clip norm; clipped: share of minibatches clipped to max_grad_norm; rec. share: the "
        "recurrence group's share of the squared gradient norm; step: ||Δθ||/||θ|| per update. a: first actor "
        "layer's recurrence coefficient on the rollout (gated ssm a_t, gru update gate z_t; the complex ssm "
        "its |λ|), median at the start, quantiles min/10/50/90/max at the end; >0.99: share of the actor's "
        "coefficients above 0.99.\n\n"
        + markdown_table(
            [
                "backbone",
                "seed",
                "ep 2",
                "ret20 end",
                "EV early",
                "EV end",
                "EV ep1",
                "EV ep4",
                "entropy",
                "entropy ep1",
                "approx-KL",
                "grad",
                "clipped",
                "rec. share",
                "rec. step",
                "proj. step",
                "a med. start",
                "a end (q)",
                "a>0.99",
                "min",
            ],
            table,
        )
        + f"\n\nHeadline: `{headline}`\n\nCommand: `{command_line()}`; {args.jobs} process(es); "
        f"{machine_info()['cpu']}; {minutes_total:.0f} minutes for this invocation's runs."
        + merged_markdown(merged_from)
    )
    if args.notes:
        md += "\n\n" + Path(args.notes).read_text()
    write_results(args.name, payload, md)
    _plot(runs, args.name)
    print(md)


def _nan(x: Any) -> float:
    return float("nan") if x is None else float(x)


def _plot(runs: list[dict[str, Any]], name: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not runs:
        return
    cols = ("|a| quantiles (actor layers)", "grad norm per group", "explained variance", "entropy", "return")
    fig, axes = plt.subplots(len(runs), len(cols), figsize=(4.2 * len(cols), 2.6 * len(runs)), squeeze=False)
    for i, run in enumerate(runs):
        rows = run["diagnostics"]
        x = np.array([r["global_step"] for r in rows]) / 1e6
        label = f"{backbone_label(run['backbone'])}, seed {run['seed']}"
        ax = axes[i, 0]
        layers = sorted(k for k in _a_layer(rows[0]) if k.startswith("actor")) if rows else []
        for j, layer in enumerate(layers):
            q = np.array([[np.nan if v is None else v for v in _a_layer(r)[layer]["q"]] for r in rows])
            ax.fill_between(x, q[:, 1], q[:, 3], color=f"C{j}", alpha=0.25)
            ax.plot(x, q[:, 2], color=f"C{j}", label=f"{layer} median (10-90%)")
            ax.plot(x, q[:, 0], color=f"C{j}", ls=":", lw=0.8)
            ax.plot(x, q[:, 4], color=f"C{j}", ls="--", lw=0.8)
        if not layers:
            ax.text(0.5, 0.5, "no recurrence", ha="center", va="center", transform=ax.transAxes)
        ax.set_ylabel(label, fontsize=8)
        ax = axes[i, 1]
        for j, g in enumerate(GROUPS):
            ax.plot(x, [_nan(r["grad"][g]) for r in rows], color=f"C{j}", label=g, lw=0.9)
        ax.axhline(run.get("max_grad_norm", 0.5), color="k", ls=":", lw=0.8)
        ax.set_yscale("log")
        ax = axes[i, 2]
        ax.plot(x, [_nan(r["explained_variance"]) for r in rows], color="k", label="all")
        for k in range(EPISODES_PER_TRIAL):
            ax.plot(
                x,
                [_nan(r["explained_variance_ep"][k]) for r in rows],
                color=f"C{k}",
                lw=0.7,
                label=f"ep {k + 1}",
            )
        ax.set_ylim(-0.5, 1.0)
        ax = axes[i, 3]
        ax.plot(x, [_nan(r["entropy"]) for r in rows], color="k", label="all")
        for k in range(EPISODES_PER_TRIAL):
            ax.plot(x, [_nan(r["entropy_ep"][k]) for r in rows], color=f"C{k}", lw=0.7, label=f"ep {k + 1}")
        ax2 = ax.twinx()
        ax2.plot(x, [_nan(r["approx_kl"]) for r in rows], color="grey", lw=0.5, alpha=0.6)
        ax2.tick_params(labelsize=6)
        ax = axes[i, 4]
        ax.plot(
            x, [_nan(r["return_mean20"]) / EPISODES_PER_TRIAL for r in rows], color="k", label="trial / 4"
        )
        for k in range(EPISODES_PER_TRIAL):
            ax.plot(x, [_nan(r["return_ep"][k]) for r in rows], color=f"C{k}", lw=0.7, label=f"ep {k + 1}")
        ax.set_ylim(-60, 0)
        if i == 0:
            for c, title in enumerate(cols):
                axes[0, c].set_title(title + (" (approx-KL grey)" if c == 3 else ""), fontsize=9)
                axes[0, c].legend(fontsize=6)
        for c in range(len(cols)):
            axes[i, c].tick_params(labelsize=7)
    for c in range(len(cols)):
        axes[-1, c].set_xlabel("env steps (M)")
    fig.tight_layout()
    fig.savefig(RESULTS_DIR / f"{name}.png", dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    main()
