"""Frozen configuration dataclasses, parsed by tyro (each field's docstring is its ``--help`` text).

Derived values are properties; ``validate()`` fails loudly on out-of-range values with a message a user
can act on. Per-env-family defaults come from :func:`ppo_defaults`, tuned by measurement (see
``benchmarks/``), not copied.
"""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass
from typing import Any, Literal

ModelKind = Literal["ssm", "neural_ssm", "improved", "gru", "lstm", "transformer", "mlp"]


@dataclass(frozen=True)
class ModelConfig:
    """Which sequence model the policy uses, and its size."""

    kind: ModelKind = "ssm"
    """backbone: ssm (structured diagonal SSM), neural_ssm (the seed's residual RNN), improved (the seed's
    ImprovedSSM stack), gru, lstm, transformer or mlp"""
    hidden_dim: int = 64
    """width of the backbone's features"""
    state_dim: int = 64
    """recurrent state size per layer (ssm, neural_ssm, improved)"""
    num_layers: int = 1
    """number of stacked layers/blocks"""
    complex: bool = False
    """ssm only: complex-diagonal (LRU) instead of real-diagonal recurrence"""
    separate_critic: bool = False
    """give the value function its own backbone (and state)"""
    init_log_std: float = 0.0
    """initial log standard deviation of Gaussian policies (continuous actions)"""
    action_bounds: Literal["tanh", "clip"] = "tanh"
    """how a bounded Box gets its Gaussian sample: tanh-squashed into the bounds, or clipped to them (rllab's
    and the MAML papers' parameterisation)"""

    def model_kwargs(self) -> dict[str, Any]:
        """Constructor kwargs the chosen backbone accepts (beyond input_dim and hidden_dim)."""
        from ssm_metarl.models import MODELS

        accepted = inspect.signature(MODELS[self.kind]).parameters
        candidates = {"state_dim": self.state_dim, "num_layers": self.num_layers, "complex": self.complex}
        return {k: v for k, v in candidates.items() if k in accepted}

    def validate(self) -> None:
        _positive(hidden_dim=self.hidden_dim, state_dim=self.state_dim, num_layers=self.num_layers)
        if self.action_bounds not in ("tanh", "clip"):
            raise ValueError(f"action_bounds must be 'tanh' or 'clip', got {self.action_bounds!r}")


@dataclass(frozen=True)
class PPOConfig:
    """Recurrent PPO with GAE (Schulman et al. 2017; 2016). Rollouts are time-major (num_steps, num_envs)."""

    env_id: str = "CartPole-v1"
    """Gymnasium environment id"""
    model: ModelConfig = ModelConfig()
    total_steps: int = 150_000
    """environment steps to train for (all envs together)"""
    num_envs: int = 8
    """parallel environments in one SyncVectorEnv"""
    num_steps: int = 64
    """rollout length per env per update (also the BPTT length of recurrent policies)"""
    gamma: float = 0.99
    """discount factor"""
    gae_lambda: float = 0.95
    """GAE lambda"""
    lr: float = 2.5e-3
    """Adam learning rate"""
    anneal_lr: bool = True
    """linearly anneal the learning rate to zero"""
    update_epochs: int = 4
    """passes over each rollout"""
    num_minibatches: int = 1
    """minibatches per epoch; whole env sequences, so it must divide num_envs"""
    clip_coef: float = 0.2
    """PPO surrogate clipping coefficient"""
    clip_vloss: bool = True
    """clip the value loss around the old values"""
    ent_coef: float = 0.0
    """entropy bonus coefficient"""
    vf_coef: float = 0.5
    """value loss coefficient"""
    max_grad_norm: float = 0.5
    """global gradient-norm clip"""
    target_kl: float | None = None
    """stop the epochs of an update early once approx-KL exceeds this (None: never)"""
    norm_adv: bool = True
    """normalise advantages per minibatch"""
    normalize_obs: bool = False
    """running mean-std observation normalisation (saved in the checkpoint)"""
    normalize_reward: bool = False
    """scale rewards by the running std of the discounted return"""
    max_episode_steps: int | None = None
    """override the env's time limit (None: the env's own)"""
    seed: int = 0
    """seed for torch, NumPy and the environments"""
    eval_every: int = 0
    """evaluate every this many env steps (0: only at the end)"""
    eval_episodes: int = 10
    """episodes per evaluation (deterministic and stochastic, reported apart)"""
    out_dir: str | None = None
    """where metrics.jsonl and checkpoints go (None: nothing written)"""
    resume: str | None = None
    """resume training from this checkpoint folder"""
    threads: int = 1
    """torch intra-op threads (1 is fastest on a busy 2-core machine)"""
    device: str = "cpu"
    """torch device for the policy (cpu or cuda)"""
    tensorboard: bool = False
    """also write TensorBoard events (needs the tensorboard package)"""
    progress: bool = True
    """show a progress bar"""

    @property
    def batch_size(self) -> int:
        return self.num_envs * self.num_steps

    @property
    def envs_per_minibatch(self) -> int:
        return self.num_envs // self.num_minibatches

    @property
    def num_updates(self) -> int:
        return max(1, self.total_steps // self.batch_size)

    def validate(self) -> None:
        self.model.validate()
        _positive(
            total_steps=self.total_steps,
            num_envs=self.num_envs,
            num_steps=self.num_steps,
            update_epochs=self.update_epochs,
            num_minibatches=self.num_minibatches,
            lr=self.lr,
            eval_episodes=self.eval_episodes,
            threads=self.threads,
        )
        _in_range(gamma=(self.gamma, 0.0, 1.0), gae_lambda=(self.gae_lambda, 0.0, 1.0))
        if self.num_envs % self.num_minibatches:
            raise ValueError(
                f"num_minibatches={self.num_minibatches} must divide num_envs={self.num_envs}: recurrent "
                "minibatches are whole env sequences"
            )
        if self.clip_coef <= 0:
            raise ValueError(f"clip_coef must be > 0, got {self.clip_coef}")


@dataclass(frozen=True)
class PGConfig:
    """REINFORCE with a learned baseline (Williams 1992): whole episodes, reward-to-go, one update per batch."""

    env_id: str = "CartPole-v1"
    """Gymnasium environment id"""
    model: ModelConfig = ModelConfig()
    episodes: int = 200
    """episodes to train for (all envs together)"""
    num_envs: int = 8
    """parallel environments; each update uses num_envs episodes"""
    gamma: float = 0.99
    """discount factor"""
    lr: float = 3e-3
    """Adam learning rate"""
    ent_coef: float = 0.0
    """entropy bonus coefficient"""
    vf_coef: float = 0.5
    """baseline (value) loss coefficient"""
    max_grad_norm: float = 0.5
    """global gradient-norm clip"""
    normalize_obs: bool = False
    """running mean-std observation normalisation (saved in the checkpoint)"""
    max_episode_steps: int | None = None
    """override the env's time limit (None: the env's own)"""
    seed: int = 0
    """seed for torch, NumPy and the environments"""
    eval_episodes: int = 10
    """episodes for the final evaluation"""
    out_dir: str | None = None
    """where metrics.jsonl and checkpoints go (None: nothing written)"""
    threads: int = 1
    """torch intra-op threads"""
    device: str = "cpu"
    """torch device for the policy"""
    progress: bool = True
    """show a progress bar"""

    def validate(self) -> None:
        self.model.validate()
        _positive(episodes=self.episodes, num_envs=self.num_envs, lr=self.lr, threads=self.threads)
        _in_range(gamma=(self.gamma, 0.0, 1.0))


@dataclass(frozen=True)
class MAMLConfig:
    """MAML for RL (Finn et al. 2017): policy-gradient inner loop, PPO-clip (or PG) outer loop.

    Each inner step collects fresh support trajectories from the current adapted parameters (unlike
    pytorch-maml-rl, which reuses one batch); the query trajectories come from the final adapted ones.
    """

    family: str = "navigation-2d"
    """task family (see ssm_metarl.envs.TASK_FAMILIES)"""
    model: ModelConfig = ModelConfig(kind="mlp", hidden_dim=64, num_layers=2, separate_critic=True)
    meta_iterations: int = 100
    """outer (meta) updates"""
    meta_batch_size: int = 20
    """tasks per meta-update"""
    num_trajectories: int = 20
    """episodes per task per inner step (and for the query set)"""
    inner_steps: int = 1
    """policy-gradient steps of adaptation per task"""
    inner_lr: float = 0.1
    """inner-loop SGD step size"""
    first_order: bool = False
    """first-order MAML (no second derivatives)"""
    baseline: Literal["critic", "linear"] = "critic"
    """inner-loop (and outer-advantage) baseline: the critic, or the MAML code's linear fit of the returns on
    [obs, obs^2, t, t^2, t^3, 1] per batch of episodes"""
    outer_lr: float = 1e-3
    """Adam step size of the meta-update"""
    outer_algo: Literal["ppo", "pg"] = "ppo"
    """outer loss: PPO-clip surrogate (several epochs) or vanilla policy gradient (one step)"""
    outer_epochs: int = 3
    """PPO epochs per meta-batch (adapted parameters are recomputed from the stored support data)"""
    clip_coef: float = 0.2
    """PPO clip coefficient of the outer loss"""
    gamma: float = 0.99
    """discount factor"""
    gae_lambda: float = 1.0
    """GAE lambda of the outer advantage"""
    vf_coef: float = 0.5
    """value loss coefficient (outer loss)"""
    ent_coef: float = 0.0
    """entropy bonus (outer loss)"""
    max_grad_norm: float = 1.0
    """meta-gradient norm clip"""
    seed: int = 0
    """seed for torch, NumPy, task sampling and envs"""
    out_dir: str | None = None
    """where metrics.jsonl and the checkpoint go"""
    threads: int = 1
    """torch intra-op threads"""
    device: str = "cpu"
    """torch device"""
    progress: bool = True
    """show a progress bar"""

    def validate(self) -> None:
        self.model.validate()
        _positive(
            meta_iterations=self.meta_iterations,
            meta_batch_size=self.meta_batch_size,
            num_trajectories=self.num_trajectories,
            inner_lr=self.inner_lr,
            outer_lr=self.outer_lr,
            outer_epochs=self.outer_epochs,
            threads=self.threads,
        )
        if self.inner_steps < 0:
            raise ValueError(f"inner_steps must be >= 0, got {self.inner_steps}")
        if self.baseline not in ("critic", "linear"):
            raise ValueError(f"baseline must be 'critic' or 'linear', got {self.baseline!r}")
        _in_range(gamma=(self.gamma, 0.0, 1.0), gae_lambda=(self.gae_lambda, 0.0, 1.0))


def replace(cfg: Any, **changes: Any) -> Any:
    """dataclasses.replace that also accepts ``model__field=value`` for the nested ModelConfig."""
    model_changes = {k.split("__", 1)[1]: changes.pop(k) for k in list(changes) if k.startswith("model__")}
    if model_changes:
        changes["model"] = dataclasses.replace(cfg.model, **model_changes)
    return dataclasses.replace(cfg, **changes)


def _positive(**values: float) -> None:
    for name, v in values.items():
        if v <= 0:
            raise ValueError(f"{name} must be > 0, got {v}")


def _in_range(**values: tuple[float, float, float]) -> None:
    for name, (v, lo, hi) in values.items():
        if not lo <= v <= hi:
            raise ValueError(f"{name} must be in [{lo}, {hi}], got {v}")
