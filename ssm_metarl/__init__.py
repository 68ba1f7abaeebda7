"""ssm-metarl: meta-reinforcement learning with state-space-model policies.

The public API, including every class the seed projects' READMEs name::

    from ssm_metarl import make_policy, train_ppo, PPOConfig, StateSpaceModel, ImprovedSSM, Environment
"""

__version__ = "0.1.0"

from ssm_metarl.adapt import (  # noqa: E402
    AdaptationComparison,
    AdaptationConfig,
    Adapter,
    ExperienceBuffer,
    HybridAdapter,
    StandardAdapter,
    TestTimeAdapter,
    compare_adaptation,
    format_table,
)
from ssm_metarl.checkpoint import CheckpointError, load_policy, save_policy  # noqa: E402
from ssm_metarl.config import ModelConfig, PGConfig, PPOConfig  # noqa: E402
from ssm_metarl.envs.make import Environment, make_env, make_vec_env  # noqa: E402
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
from ssm_metarl.rl.evaluate import evaluate_policy  # noqa: E402
from ssm_metarl.rl.pg import train_pg  # noqa: E402
from ssm_metarl.rl.ppo import train_ppo  # noqa: E402

__all__ = [
    "AdaptationComparison",
    "AdaptationConfig",
    "Adapter",
    "ExperienceBuffer",
    "HybridAdapter",
    "MetaMAML",
    "MetaMAMLTrainer",
    "SSMMetaPolicy",
    "StandardAdapter",
    "TaskBatch",
    "TestTimeAdapter",
    "compare_adaptation",
    "evaluate_in_context",
    "format_table",
    "list_pretrained",
    "load_pretrained",
    "train_maml",
    "train_multitask",
    "train_rl2",
    "GRU",
    "LSTM",
    "MLP",
    "MODELS",
    "SSM",
    "ActorCritic",
    "CheckpointError",
    "Environment",
    "ImprovedSSM",
    "ImprovedSSMBackbone",
    "ModelConfig",
    "PGConfig",
    "PPOConfig",
    "StateSpaceModel",
    "Transformer",
    "__version__",
    "evaluate_policy",
    "linear_scan",
    "linear_scan_reference",
    "load_policy",
    "make_env",
    "make_model",
    "make_policy",
    "make_vec_env",
    "save_policy",
    "train_pg",
    "train_ppo",
]
