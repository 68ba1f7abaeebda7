"""Test-time adaptation: standard (policy gradient / PPO on the current task) and hybrid (plus experience
replay), online adaptation while acting, the seeds' supervised ``Adapter``, and the comparison protocol.

    from ssm_metarl.adapt import compare_adaptation, format_table
    comparison = compare_adaptation(policy, "navigation-2d", get_family("navigation-2d").test[:10], steps=3)
    print(format_table(comparison))
"""

from ssm_metarl.adapt.evaluate import (
    AdaptationComparison,
    Mode,
    adapt_checkpoint,
    compare_adaptation,
    save_comparison,
)
from ssm_metarl.adapt.hybrid import (
    HybridAdapter,
    check_buffer,
    fill_buffer,
    make_adapter,
    replay_log_prob,
    replay_loss,
)
from ssm_metarl.adapt.online import OnlineStats, TestTimeAdapter
from ssm_metarl.adapt.replay import ExperienceBuffer, ReplayBatch, Trajectory
from ssm_metarl.adapt.report import format_table
from ssm_metarl.adapt.standard import (
    AdaptAlgo,
    AdaptationRun,
    StandardAdapter,
    seeded,
    seeded_episodes,
    surrogate_loss,
)
from ssm_metarl.adapt.supervised import AdaptationConfig, Adapter

__all__ = [
    "AdaptAlgo",
    "AdaptationComparison",
    "AdaptationConfig",
    "AdaptationRun",
    "Adapter",
    "ExperienceBuffer",
    "HybridAdapter",
    "Mode",
    "OnlineStats",
    "ReplayBatch",
    "StandardAdapter",
    "TestTimeAdapter",
    "Trajectory",
    "adapt_checkpoint",
    "check_buffer",
    "compare_adaptation",
    "fill_buffer",
    "format_table",
    "make_adapter",
    "replay_log_prob",
    "replay_loss",
    "save_comparison",
    "seeded",
    "seeded_episodes",
    "surrogate_loss",
]
