"""ssm-metarl: meta-reinforcement learning with state-space-model policies.

The public API, including every class the seed projects' READMEs name::

    from ssm_metarl import recipe, train_ppo, load_pretrained, compare_adaptation, format_table
"""

from ssm_metarl._version import __version__
from ssm_metarl.adapt import (  # noqa: E402
    AdaptationConfig,
    Adapter,
    ExperienceBuffer,
    HybridAdapter,
    StandardAdapter,
    TestTimeAdapter,
    compare_adaptation,
    evaluate_adaptation,
)
from ssm_metarl.checkpoint import load_policy, save_policy  # noqa: E402
from ssm_metarl.config import (  # noqa: E402
    AdaptConfig,
    MAMLConfig,
    ModelConfig,
    PGConfig,
    PPOConfig,
    RunConfig,
)
from ssm_metarl.envs.make import Environment, make_env, make_vec_env  # noqa: E402
from ssm_metarl.errors import (  # noqa: E402
    CheckpointError,
    ConfigError,
    DivergenceError,
    EnvError,
    InputError,
    SpaceError,
)
from ssm_metarl.meta.maml import train_maml, train_multitask  # noqa: E402
from ssm_metarl.meta.rl2 import evaluate_in_context, train_rl2  # noqa: E402
from ssm_metarl.meta.seed_api import MetaMAMLTrainer, SSMMetaPolicy, TaskBatch  # noqa: E402
from ssm_metarl.meta.supervised import MetaMAML  # noqa: E402
from ssm_metarl.models import (  # noqa: E402
    GRU,
    LSTM,
    MLP,
    MODELS,
    SSM,
    ActorCritic,
    ImprovedSSMBackbone,
    StateSpaceModel,
    Transformer,
    make_model,
    make_policy,
)
from ssm_metarl.models.improved import ImprovedSSM  # noqa: E402
from ssm_metarl.models.scan import linear_scan, linear_scan_reference  # noqa: E402
from ssm_metarl.pretrained import list_pretrained, load_pretrained  # noqa: E402
from ssm_metarl.recipes import recipe  # noqa: E402
from ssm_metarl.results import Returns, format_table, plot_returns  # noqa: E402
from ssm_metarl.rl.evaluate import evaluate_policy  # noqa: E402
from ssm_metarl.rl.pg import train_pg  # noqa: E402
from ssm_metarl.rl.ppo import train_ppo  # noqa: E402

__all__ = [
    "GRU",
    "LSTM",
    "MLP",
    "MODELS",
    "SSM",
    "ActorCritic",
    "AdaptConfig",
    "AdaptationConfig",
    "Adapter",
    "CheckpointError",
    "ConfigError",
    "DivergenceError",
    "EnvError",
    "Environment",
    "ExperienceBuffer",
    "HybridAdapter",
    "ImprovedSSM",
    "ImprovedSSMBackbone",
    "InputError",
    "MAMLConfig",
    "MetaMAML",
    "MetaMAMLTrainer",
    "ModelConfig",
    "PGConfig",
    "PPOConfig",
    "Returns",
    "RunConfig",
    "SSMMetaPolicy",
    "SpaceError",
    "StandardAdapter",
    "StateSpaceModel",
    "TaskBatch",
    "TestTimeAdapter",
    "Transformer",
    "__version__",
    "compare_adaptation",
    "evaluate_adaptation",
    "evaluate_in_context",
    "evaluate_policy",
    "format_table",
    "linear_scan",
    "linear_scan_reference",
    "list_pretrained",
    "load_policy",
    "load_pretrained",
    "make_env",
    "make_model",
    "make_policy",
    "make_vec_env",
    "plot_returns",
    "recipe",
    "save_policy",
    "train_maml",
    "train_multitask",
    "train_pg",
    "train_ppo",
    "train_rl2",
]
