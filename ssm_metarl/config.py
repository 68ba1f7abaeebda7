"""The configuration tree: frozen dataclasses, parsed by tyro for every subcommand.

Each field's docstring is its ``--help`` text, and each numeric field declares its range with
``Annotated[..., Range(...)]``: a config is checked when it is built (``__post_init__``), so a value of
the wrong type, a NaN, an out-of-range number or an unknown choice raises :class:`ConfigError` naming the
field and its range, at the boundary, before anything runs. Nothing is ever converted silently.

The tree::

    RunConfig      seed, output folder, checkpoints and resume, threads, device, progress   (every run)
    ModelConfig    the policy's backbone and heads
    PPOConfig      recurrent PPO + GAE on one env id (RL² is PPO on a family's trial env)
    PGConfig       REINFORCE with a learned baseline
    AdaptConfig    one adaptation step and how many: step size, data per step, loss, replay weight
    MAMLConfig     MAML; its inner loop is an AdaptConfig (``inner``), the same one test-time adaptation uses

Named, complete configs for each task family live in :mod:`ssm_metarl.recipes`; the CLI, the app, the
demo, the benchmarks and the tests all start from them.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import types
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union

import tyro

from ssm_metarl.errors import ConfigError

ModelKind = Literal["ssm", "gated_ssm", "neural_ssm", "improved", "gru", "lstm", "transformer", "mlp"]
MODEL_KINDS: tuple[str, ...] = typing.get_args(ModelKind)


@dataclass(frozen=True)
class Range:
    """The allowed interval of a numeric field: ``gt``/``ge`` below, ``lt``/``le`` above (None: unbounded).

    Floats must also be finite; ints must be ints (not bools, not floats)."""

    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None

    def contains(self, v: float) -> bool:
        return (
            (self.gt is None or v > self.gt)
            and (self.ge is None or v >= self.ge)
            and (self.lt is None or v < self.lt)
            and (self.le is None or v <= self.le)
        )

    def __str__(self) -> str:
        lo = f"> {self.gt:g}" if self.gt is not None else f">= {self.ge:g}" if self.ge is not None else ""
        hi = f"< {self.lt:g}" if self.lt is not None else f"<= {self.le:g}" if self.le is not None else ""
        return " and ".join(p for p in (lo, hi) if p) or "any finite value"


# ---- field types with their ranges --------------------------------------------------------------------
PosInt = Annotated[int, Range(ge=1, le=10**12)]
NonNegInt = Annotated[int, Range(ge=0, le=10**12)]
Unit = Annotated[float, Range(ge=0.0, le=1.0)]
LearningRate = Annotated[float, Range(gt=0.0, le=100.0)]
Coef = Annotated[float, Range(ge=0.0, le=1e6)]
Width = Annotated[int, Range(ge=1, le=8192)]


@dataclass(frozen=True)
class Checked:
    """Base of every config: checks each field against its annotation when the config is built."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            _check(type(self).__name__, f.name, getattr(self, f.name), _hints(type(self))[f.name])
        self.check()

    def check(self) -> None:
        """Cross-field rules; raise :class:`ConfigError`. Subclasses override."""

    def replace(self, **changes: Any) -> Any:
        """A copy with ``changes``; ``section__field=value`` reaches into a nested section."""
        nested: dict[str, dict[str, Any]] = {}
        for key in [k for k in changes if "__" in k]:
            section, rest = key.split("__", 1)
            nested.setdefault(section, {})[rest] = changes.pop(key)
        for section, sub in nested.items():
            current = getattr(self, section, None)
            if not isinstance(current, Checked):
                raise ConfigError(f"{type(self).__name__} has no config section {section!r}")
            changes[section] = current.replace(**sub)
        try:
            return dataclasses.replace(self, **changes)
        except TypeError as e:
            names = [f.name for f in dataclasses.fields(self)]
            raise ConfigError(f"{type(self).__name__}: {e}; its fields are {names}") from e

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON: nested sections as dicts, tuples as lists."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Any:
        """Inverse of :meth:`to_dict`; unknown or missing keys are an error."""
        if not isinstance(data, dict):
            raise ConfigError(f"{cls.__name__}: expected a JSON object, got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"{cls.__name__} has no fields {unknown}; its fields are {sorted(names)}")
        values = {}
        for f in dataclasses.fields(cls):
            if f.name not in data:
                continue
            sub = _section_type(_hints(cls)[f.name])
            v = data[f.name]
            if sub is not None and isinstance(v, dict):
                v = sub.from_dict(v)
            elif isinstance(v, list):
                v = tuple(v)
            values[f.name] = v
        return cls(**values)


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls, include_extras=True)
    return _HINTS[cls]


def _strip(tp: Any) -> tuple[Any, list[Any]]:
    """(bare type, metadata) of a possibly Annotated type."""
    meta: list[Any] = []
    while typing.get_origin(tp) is Annotated:
        args = typing.get_args(tp)
        tp, meta = args[0], meta + list(args[1:])
    return tp, meta


def _section_type(tp: Any) -> type[Checked] | None:
    tp, _ = _strip(tp)
    return tp if isinstance(tp, type) and issubclass(tp, Checked) else None


def _describe(tp: Any) -> str:
    tp, _ = _strip(tp)
    if typing.get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if typing.get_origin(tp) in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(tp))
    if typing.get_origin(tp) is tuple:
        return "a tuple of " + _describe(typing.get_args(tp)[0])
    return "None" if tp is type(None) else getattr(tp, "__name__", str(tp))


def _check(owner: str, name: str, value: Any, tp: Any) -> None:
    problem = _problem(value, tp)
    if problem is not None:
        raise ConfigError(f"{owner}.{name} must be {problem}, got {value!r}")


def _problem(value: Any, tp: Any) -> str | None:
    """None when ``value`` fits the annotated type ``tp``, else what it must be."""
    tp, meta = _strip(tp)
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        options = typing.get_args(tp)
        if any(_problem(value, o) is None for o in options):
            return None
        return " or ".join(p for o in options if (p := _problem(value, o)) is not None)
    if tp is type(None):
        return None if value is None else "None"
    if origin is Literal:
        choices = typing.get_args(tp)
        ok = any(value == c and type(value) is type(c) for c in choices)
        return None if ok else "one of " + ", ".join(repr(c) for c in choices)
    if origin is tuple:
        item = typing.get_args(tp)[0]
        if not isinstance(value, tuple):
            return f"a tuple of {_describe(item)}"
        bad = [p for v in value if (p := _problem(v, item)) is not None]
        return f"a tuple of {bad[0]}" if bad else None
    if isinstance(tp, type) and issubclass(tp, Checked):
        return None if isinstance(value, tp) else f"a {tp.__name__}"
    ranges = [m for m in meta if isinstance(m, Range)]
    if tp is bool:
        return None if type(value) is bool else "True or False"
    if tp is int:
        if type(value) is not int:
            return "an int" + (f" {ranges[0]}" if ranges else "")
    elif tp is float:
        if type(value) not in (int, float) or not math.isfinite(value):
            return "a finite number" + (f" {ranges[0]}" if ranges else "")
    elif tp is str:
        if type(value) is not str or not value:
            return "a non-empty string"
        return None
    else:
        return None if isinstance(value, tp) else f"a {getattr(tp, '__name__', tp)}"
    for r in ranges:
        if not r.contains(value):
            return f"a{'n int' if tp is int else ' number'} {r}"
    return None


def field_specs(cls: type[Checked]) -> dict[str, Any]:
    """name -> annotated type of each field of ``cls`` (what the property tests draw values from)."""
    return {f.name: _hints(cls)[f.name] for f in dataclasses.fields(cls)}


_DEVICE = re.compile(r"^(cpu|cuda(:\d+)?|mps)$")


@dataclass(frozen=True)
class RunConfig(Checked):
    """What every run needs besides its algorithm: seed, where it writes, resume, threads and device."""

    seed: Annotated[int, Range(ge=0, le=2**31 - 1)] = 0
    """seed for torch, NumPy, task sampling and the environments"""
    out_dir: Annotated[str | None, tyro.conf.arg(aliases=("--out",))] = None
    """folder for run.json, metrics.jsonl and checkpoints (None: nothing is written)"""
    checkpoint_every: NonNegInt = 10
    """write a resumable checkpoint every this many updates (0: only the final one); needs out_dir"""
    keep_checkpoints: Annotated[int, Range(ge=1, le=1000)] = 2
    """how many of the newest resumable checkpoints to keep"""
    resume: str | None = None
    """continue the run saved in this folder (a run folder, whose newest checkpoint is used, or one checkpoint
    folder); the rest of the config must equal the one it was started with"""
    threads: Annotated[int, Range(ge=1, le=1024)] = 1
    """torch intra-op threads (1 is fastest on a busy 2-core machine)"""
    device: str = "cpu"
    """torch device of the policy: cpu, cuda, cuda:N or mps"""
    progress: bool = True
    """show a progress bar"""
    tensorboard: bool = False
    """also write TensorBoard events (needs the tensorboard package)"""

    def check(self) -> None:
        if not _DEVICE.match(self.device):
            raise ConfigError(f"RunConfig.device must be cpu, cuda, cuda:N or mps, got {self.device!r}")
        if self.resume is not None and self.out_dir is None:
            raise ConfigError("RunConfig.resume needs out_dir (the run folder to continue writing into)")


@dataclass(frozen=True)
class ModelConfig(Checked):
    """Which sequence model the policy uses, and its size."""

    kind: ModelKind = "ssm"
    """backbone: ssm (structured diagonal SSM, LRU), gated_ssm (input-gated diagonal SSM, Griffin's RG-LRU),
    neural_ssm (the seed's residual RNN), improved (the seed's ImprovedSSM stack), gru, lstm, transformer or
    mlp"""
    hidden_dim: Width = 64
    """width of the backbone's features"""
    state_dim: Width = 64
    """recurrent state size per layer (ssm, gated_ssm, neural_ssm, improved)"""
    num_layers: Annotated[int, Range(ge=1, le=64)] = 1
    """number of stacked layers/blocks"""
    complex: bool = False
    """ssm only: complex-diagonal (LRU) instead of real-diagonal recurrence"""
    separate_critic: bool = False
    """give the value function its own backbone (and state)"""
    init_log_std: Annotated[float, Range(ge=-20.0, le=5.0)] = 0.0
    """initial log standard deviation of Gaussian policies (continuous actions)"""
    action_bounds: Literal["tanh", "clip"] = "tanh"
    """how a bounded Box gets its Gaussian sample: tanh-squashed into the bounds, or clipped to them (rllab's
    and the MAML papers' parameterisation)"""
    ring_min: Annotated[float, Range(ge=0.0, lt=1.0)] | None = None
    """the smallest decay of the recurrence's ring initialisation: the ssm's |lambda| (its ``r_min``, default
    0.5), the gated ssm's sigmoid(lambda)^c (its ``a_min``, default 0.9, Griffin's); a smaller value adds fast
    channels; None: the backbone's default"""
    conv_width: Annotated[int, Range(ge=0, le=16)] = 0
    """gated_ssm only: taps of a causal depthwise convolution over time before each recurrence (Griffin's
    Conv1D; 0: none)"""
    learned_step_sizes: bool = False
    """give the policy one learned inner step size per parameter tensor, a factor on ``AdaptConfig.lr``
    (initially 1) that MAML's outer loop trains and every adaptation step uses (Meta-SGD, Li et al. 2017, per
    tensor as in MAML++, Antoniou et al. 2019)"""


@dataclass(frozen=True)
class PPOConfig(Checked):
    """Recurrent PPO with GAE (Schulman et al. 2017; 2016). Rollouts are time-major (rollout_steps, num_envs).

    RL² (Duan et al. 2016) is this config on a task family's trial env (``ssm_metarl.envs.trial.rl2_env_id``)."""

    env_id: str = "CartPole-v1"
    """Gymnasium environment id"""
    model: ModelConfig = ModelConfig()
    run: tyro.conf.OmitArgPrefixes[RunConfig] = RunConfig()
    total_steps: PosInt = 150_000
    """environment steps to train for (all envs together)"""
    num_envs: Annotated[int, Range(ge=1, le=4096)] = 8
    """parallel environments in one SyncVectorEnv"""
    rollout_steps: Annotated[int, Range(ge=1, le=100_000)] = 64
    """rollout length per env per update (also the BPTT length of recurrent policies)"""
    gamma: Unit = 0.99
    """discount factor"""
    gae_lambda: Unit = 0.95
    """GAE lambda"""
    lr: LearningRate = 2.5e-3
    """Adam learning rate"""
    anneal_lr: bool = True
    """linearly anneal the learning rate to zero"""
    update_epochs: Annotated[int, Range(ge=1, le=1000)] = 4
    """passes over each rollout"""
    num_minibatches: Annotated[int, Range(ge=1, le=4096)] = 1
    """minibatches per epoch; whole env sequences, so it must divide num_envs"""
    clip_coef: Annotated[float, Range(gt=0.0, le=10.0)] = 0.2
    """PPO surrogate clipping coefficient"""
    clip_vloss: bool = True
    """clip the value loss around the old values"""
    ent_coef: Coef = 0.0
    """entropy bonus coefficient"""
    vf_coef: Coef = 0.5
    """value loss coefficient"""
    max_grad_norm: Annotated[float, Range(gt=0.0, le=1e9)] = 0.5
    """gradient-norm clip (see ``clip_grad``)"""
    clip_grad: Literal["global", "actor_critic"] = "global"
    """global: one norm clip over every parameter; actor_critic: the critic's parameters (its own backbone and
    the value head) and the actor's (the rest) each clipped to ``max_grad_norm``, so a large value-loss
    gradient does not shrink the policy's step"""
    recurrence_lr_scale: Annotated[float, Range(ge=0.0, le=1000.0)] = 1.0
    """factor on ``lr`` for the recurrences' own parameters (the ssm's nu/theta/gamma, the gated ssm's
    lambda; ``models.base.is_recurrence_parameter``), which the S5 and LRU code train at their own rate; 0
    freezes them"""
    target_kl: Annotated[float, Range(gt=0.0, le=100.0)] | None = None
    """stop the epochs of an update early once approx-KL exceeds this (None: never)"""
    norm_adv: bool = True
    """normalise advantages per minibatch"""
    normalize_obs: bool = False
    """running mean-std observation normalisation (saved in the checkpoint)"""
    normalize_reward: bool = False
    """scale rewards by the running std of the discounted return"""
    max_episode_steps: Annotated[int, Range(ge=1, le=10**9)] | None = None
    """override the env's time limit (None: the env's own)"""
    eval_every: NonNegInt = 0
    """evaluate (and keep the best checkpoint) every this many env steps (0: only at the end)"""
    eval_episodes: Annotated[int, Range(ge=1, le=100_000)] = 10
    """episodes per evaluation (deterministic and stochastic, reported apart)"""

    @property
    def batch_size(self) -> int:
        return self.num_envs * self.rollout_steps

    @property
    def envs_per_minibatch(self) -> int:
        return self.num_envs // self.num_minibatches

    @property
    def num_updates(self) -> int:
        return max(1, self.total_steps // self.batch_size)

    def check(self) -> None:
        if self.num_envs % self.num_minibatches:
            raise ConfigError(
                f"PPOConfig.num_minibatches={self.num_minibatches} must divide num_envs={self.num_envs}: "
                "recurrent minibatches are whole env sequences"
            )


@dataclass(frozen=True)
class PGConfig(Checked):
    """REINFORCE with a learned baseline (Williams 1992): whole episodes, reward-to-go, one update per batch."""

    env_id: str = "CartPole-v1"
    """Gymnasium environment id"""
    model: ModelConfig = ModelConfig()
    run: tyro.conf.OmitArgPrefixes[RunConfig] = RunConfig()
    episodes: PosInt = 200
    """episodes to train for (all envs together)"""
    num_envs: Annotated[int, Range(ge=1, le=4096)] = 8
    """parallel environments; each update uses num_envs episodes"""
    gamma: Unit = 0.99
    """discount factor"""
    lr: LearningRate = 3e-3
    """Adam learning rate"""
    ent_coef: Coef = 0.0
    """entropy bonus coefficient"""
    vf_coef: Coef = 0.5
    """baseline (value) loss coefficient"""
    max_grad_norm: Annotated[float, Range(gt=0.0, le=1e9)] = 0.5
    """global gradient-norm clip"""
    normalize_obs: bool = False
    """running mean-std observation normalisation (saved in the checkpoint)"""
    max_episode_steps: Annotated[int, Range(ge=1, le=10**9)] | None = None
    """override the env's time limit (None: the env's own)"""
    eval_episodes: Annotated[int, Range(ge=1, le=100_000)] = 10
    """episodes for the final evaluation"""

    @property
    def num_updates(self) -> int:
        return max(1, self.episodes // self.num_envs)


@dataclass(frozen=True)
class AdaptConfig(Checked):
    """Adaptation to one task by gradient steps: MAML's inner loop and test-time adaptation alike.

    Each step acts ``episodes`` whole episodes with the current parameters, then takes one SGD step of size
    ``lr`` on their loss (``algo="pg"``: REINFORCE with a detached baseline, MAML's inner loss) or
    ``ppo_epochs`` steps of the PPO-clip surrogate (``algo="ppo"``). Hybrid adaptation adds
    ``experience_weight`` times a replay loss on an experience buffer."""

    steps: Annotated[int, Range(ge=0, le=10_000)] = 1
    """adaptation (gradient) steps"""
    lr: LearningRate = 0.1
    """SGD step size of each adaptation step"""
    later_lr: Annotated[float, Range(gt=0.0, le=100.0)] | None = None
    """step size of the steps after the first (None: lr); the MAML paper's test protocol halves it"""
    episodes: Annotated[int, Range(ge=1, le=100_000)] = 20
    """episodes of fresh data per adaptation step (the same number is used to measure the return)"""
    algo: Literal["pg", "ppo"] = "pg"
    """loss of one step: pg (REINFORCE, MAML's inner loss) or ppo (clipped surrogate, several epochs)"""
    baseline: Literal["critic", "linear"] = "critic"
    """the baseline of the pg loss: the critic, or the MAML code's linear fit of the returns on
    [obs, obs^2, t, t^2, t^3, 1] per batch of episodes"""
    gamma: Unit = 0.99
    """discount of the returns"""
    ppo_epochs: Annotated[int, Range(ge=1, le=1000)] = 4
    """SGD steps per adaptation step with algo=ppo"""
    clip_coef: Annotated[float, Range(gt=0.0, lt=1.0)] = 0.2
    """PPO ratio clip (algo=ppo and the replay loss)"""
    experience_weight: Coef = 0.1
    """hybrid adaptation: weight of the replay loss (0 gives exactly standard adaptation)"""
    replay_batch_size: Annotated[int, Range(ge=1, le=100_000)] | None = None
    """hybrid adaptation: trajectories replayed per step (None: episodes)"""
    params: Literal["all", "heads"] = "all"
    """what an adaptation step changes: every parameter, or the heads only (the policy and value layers and
    the log-std; the backbone, a recurrence included, stays as meta-trained, and MAML's outer loop still
    trains it)"""

    @property
    def replay_batch(self) -> int:
        return self.replay_batch_size or self.episodes

    def step_lr(self, k: int) -> float:
        """The step size of step ``k`` (0-based)."""
        return self.lr if k == 0 or self.later_lr is None else self.later_lr


@dataclass(frozen=True)
class MAMLConfig(Checked):
    """MAML for RL (Finn et al. 2017): an AdaptConfig inner loop, a PPO-clip (or PG) outer loop.

    Each inner step collects fresh support episodes from the current adapted parameters (unlike
    pytorch-maml-rl, which reuses one batch); the query episodes come from the final adapted ones."""

    family: str = "navigation-2d"
    """task family (see ssm_metarl.envs.TASK_FAMILIES)"""
    model: ModelConfig = ModelConfig(kind="mlp", hidden_dim=64, num_layers=2, separate_critic=True)
    run: tyro.conf.OmitArgPrefixes[RunConfig] = RunConfig()
    inner: AdaptConfig = AdaptConfig(steps=1, lr=1.0, episodes=20, baseline="linear")
    """the inner loop (and the adaptation measured after meta-training): steps, step size, episodes per step"""
    first_order: bool = False
    """first-order MAML (no second derivatives)"""
    meta_iterations: PosInt = 100
    """outer (meta) updates"""
    meta_batch_size: Annotated[int, Range(ge=1, le=100_000)] = 20
    """tasks per meta-update"""
    outer_lr: LearningRate = 3e-3
    """Adam step size of the meta-update"""
    outer_algo: Literal["ppo", "pg"] = "ppo"
    """outer loss: PPO-clip surrogate (several epochs) or vanilla policy gradient (one step)"""
    outer_epochs: Annotated[int, Range(ge=1, le=1000)] = 3
    """PPO epochs per meta-batch (adapted parameters are recomputed from the stored support data)"""
    clip_coef: Annotated[float, Range(gt=0.0, le=10.0)] = 0.2
    """PPO clip coefficient of the outer loss"""
    gae_lambda: Unit = 1.0
    """GAE lambda of the outer advantage"""
    vf_coef: Coef = 0.5
    """value loss coefficient (outer loss)"""
    ent_coef: Coef = 0.0
    """entropy bonus (outer loss)"""
    max_grad_norm: Annotated[float, Range(gt=0.0, le=1e9)] = 1.0
    """meta-gradient norm clip (actor, critic and the learned step sizes apart)"""
    step_size_lr: LearningRate = 0.03
    """Adam step size of the learned inner step sizes (their logarithms), with ``model.learned_step_sizes``"""

    def check(self) -> None:
        if self.inner.algo != "pg":
            raise ConfigError("MAMLConfig.inner.algo must be 'pg': the inner loop is a policy-gradient step")

    @property
    def gamma(self) -> float:
        """The discount of inner and outer losses."""
        return self.inner.gamma


@dataclass(frozen=True)
class RSIConfig(Checked):
    """The self-improvement loop (:mod:`ssm_metarl.rsi`): Optuna proposes changes around the incumbent, each
    candidate is meta-trained (warm-started where shapes allow) and measured on the family's ``validation``
    tasks; the best replaces the incumbent only when the lower end of a paired bootstrap interval of the score
    difference is above zero, and a re-evaluation on fresh seeds that regresses rolls it back."""

    start: MAMLConfig = MAMLConfig(meta_iterations=20, run=RunConfig(out_dir="runs/rsi"))
    """the starting incumbent's recipe (trained when the loop is created); its family is the loop's, its
    ``run.out_dir`` the loop's folder (manifest, incumbent, history, decisions, study) and ``run.seed`` the
    seed of the sampler and of every training run"""
    cycles: PosInt = 5
    """improvement cycles to run (the loop may stop earlier: safety stop, budget limits)"""
    candidates: Annotated[int, Range(ge=1, le=1000)] = 3
    """candidates Optuna proposes, trains and measures per cycle"""
    candidate_iterations: PosInt = 10
    """meta-iterations each candidate is trained for"""
    eval_tasks: Annotated[int, Range(ge=1, le=10_000)] = 10
    """validation tasks every candidate is measured on (the first N of the family's validation list)"""
    eval_seeds: Annotated[int, Range(ge=2, le=1000)] = 3
    """evaluation seeds per task (seeds 0..N-1)"""
    recheck_seeds: Annotated[int, Range(ge=2, le=1000)] = 3
    """fresh evaluation seeds of the re-evaluation after installing (seeds 1000..1000+N-1)"""
    oor_tasks: Annotated[int, Range(ge=1, le=10_000)] = 3
    """out-of-range tasks of the generalisation metric (reported; weighted only if w_generalisation > 0)"""
    w_return: Coef = 1.0
    """weight of the return after adaptation"""
    w_speed: Coef = 0.5
    """weight of the adaptation speed (area under the adaptation curve)"""
    w_generalisation: Coef = 0.0
    """weight of generalisation (out-of-range vs validation); 0 by default: choosing on out_of_range would
    make it a training split (``docs/concepts/evaluation.md``)"""
    w_efficiency: Coef = 0.25
    """weight of the meta-learning efficiency (gain over the multi-task baseline per training env step)"""
    w_stability: Coef = 0.25
    """weight of stability (minus the spread over evaluation seeds)"""
    confidence: Annotated[float, Range(ge=0.5, lt=1.0)] = 0.9
    """one-sided confidence of the acceptance test (the bootstrap quantile 1 - confidence must exceed 0)"""
    bootstrap: Annotated[int, Range(ge=100, le=1_000_000)] = 2000
    """bootstrap resamples of the acceptance test"""
    max_failures: Annotated[int, Range(ge=1, le=1000)] = 3
    """emergency stop after this many consecutive failed cycles"""
    floor: float | None = None
    """stop when the incumbent's score falls below this (None: no floor)"""
    max_env_steps: PosInt = 10**12
    """stop once the loop has used this many env steps (training and evaluation)"""
    max_minutes: Annotated[float, Range(gt=0.0, le=1e9)] = 1e9
    """stop once the loop has run this long"""
    search: tuple[
        Literal["hidden_scale", "state_scale", "layers_delta", "outer_lr_scale", "inner_lr_scale"], ...
    ] = (
        "hidden_scale",
        "state_scale",
        "layers_delta",
        "outer_lr_scale",
        "inner_lr_scale",
    )
    """what Optuna may change: hidden / state size x0.8-1.2, layers +-1, outer / inner step size (the rest stay)"""
    kinds: tuple[ModelKind, ...] = ()
    """model kinds Optuna may switch the backbone to (the incumbent's kind is always one; empty: keep it)"""
    sampler: Literal["tpe", "random", "nsga2"] = "tpe"
    """Optuna sampler of the proposals (nsga2: NSGA-II with a population of ``max(candidates, 2)``)"""
    objectives: Literal["score", "pareto"] = "score"
    """score: one study objective, the weighted score; pareto: every weighted metric is its own objective (a
    multi-objective study whose Pareto front ``status`` reports), and a candidate is installed only when it
    dominates the incumbent (no weighted metric worse, on the validation means) and wins the score test"""
    storage: str | None = None
    """Optuna storage URL (any SQLAlchemy URL); None: sqlite:///<out_dir>/study.db"""
    study_name: str = "rsi"
    """the study's name in the storage; a study made by another configuration is refused"""
    heartbeat_s: Annotated[float, Range(gt=0.0, le=3600.0)] = 10.0
    """a running trial records a heartbeat this often (seconds)"""
    grace_s: Annotated[float, Range(gt=0.0, le=86400.0)] = 120.0
    """a running trial on another machine without a heartbeat for this long is lost, and its place rerun"""
    poll_s: Annotated[float, Range(gt=0.0, le=3600.0)] = 1.0
    """how often the coordinator and workers look at the study while they wait"""
    restart_stopped: bool = False
    """continue a loop that a safety rule stopped (after you have looked at why: decisions.jsonl)"""

    def check(self) -> None:
        weights = (self.w_return, self.w_speed, self.w_generalisation, self.w_efficiency, self.w_stability)
        if sum(weights) <= 0:
            raise ConfigError("RSIConfig: the metric weights w_* must not all be 0")
        if self.start.run.out_dir is None:
            raise ConfigError(
                "RSIConfig.start.run.out_dir (--out_dir) names the loop's folder; it cannot be None"
            )
        if self.start.run.resume is not None:
            raise ConfigError(
                "the loop resumes by itself: run it again with the same --out_dir (no --resume)"
            )
        defaults, run = RunConfig(), self.start.run
        unused = [
            k
            for k in ("checkpoint_every", "keep_checkpoints", "tensorboard")
            if getattr(run, k) != getattr(defaults, k)
        ]
        if unused:
            raise ConfigError(
                f"RSIConfig: {unused} are not used by the loop (its state is checkpointed per cycle in out_dir)"
            )
        if not self.search or len(set(self.search)) != len(self.search):
            raise ConfigError(f"RSIConfig.search must name each searched parameter once, got {self.search}")
        if self.floor is not None and not math.isfinite(self.floor):
            raise ConfigError(f"RSIConfig.floor must be a finite number or None, got {self.floor!r}")

    @property
    def family(self) -> str:
        return self.start.family

    @property
    def out_dir(self) -> str:
        """The loop's folder (``start.run.out_dir``)."""
        return str(self.start.run.out_dir)

    @property
    def seed(self) -> int:
        """The seed of the sampler and of every training run (``start.run.seed``)."""
        return self.start.run.seed


BUDGET_FIELDS: dict[type, str] = {
    PPOConfig: "total_steps",
    PGConfig: "episodes",
    MAMLConfig: "meta_iterations",
    RSIConfig: "candidate_iterations",
}
"""The field that sets each training config's budget (what ``SSM_METARL_BUDGET`` scales)."""


BUDGET_ENV = "SSM_METARL_BUDGET"
"""The environment variable that scales training budgets for smoke runs of a documented command or snippet
as written (read by the CLI, ``main.py`` and the seed API's ``MetaMAMLTrainer.meta_train``)."""


def budget_from_env() -> float | None:
    """The budget scale :data:`BUDGET_ENV` sets (None when unset or empty); not a number > 0 fails."""
    raw = os.environ.get(BUDGET_ENV)
    if raw is None or raw == "":
        return None
    try:
        factor = float(raw)
    except ValueError:
        raise ConfigError(
            f"{BUDGET_ENV} must be a number (a budget scale such as 0.01), got {raw!r}"
        ) from None
    if not math.isfinite(factor) or factor <= 0:
        raise ConfigError(f"{BUDGET_ENV} must be a finite number > 0, got {raw!r}")
    return factor


def scale_budget(cfg: Any, factor: float) -> Any:
    """``cfg`` with its budget field (:data:`BUDGET_FIELDS`) times ``factor``, at least one update's worth."""
    if not math.isfinite(factor) or factor <= 0:
        raise ConfigError(f"a budget scale must be a finite number > 0, got {factor!r}")
    name = BUDGET_FIELDS.get(type(cfg))
    if name is None:
        return cfg
    floor = {PPOConfig: lambda c: c.batch_size, PGConfig: lambda c: c.num_envs}.get(type(cfg), lambda c: 1)(
        cfg
    )
    return cfg.replace(**{name: max(floor, int(round(getattr(cfg, name) * factor)))})


__all__ = [
    "BUDGET_ENV",
    "BUDGET_FIELDS",
    "MODEL_KINDS",
    "AdaptConfig",
    "Checked",
    "ConfigError",
    "MAMLConfig",
    "ModelConfig",
    "ModelKind",
    "PGConfig",
    "PPOConfig",
    "Range",
    "RSIConfig",
    "RunConfig",
    "budget_from_env",
    "field_specs",
    "scale_budget",
]
