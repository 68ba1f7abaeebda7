"""Test-time adaptation: standard (policy gradient / PPO on the current task) and hybrid (plus experience
replay), online adaptation while acting, the seeds' supervised ``Adapter``, and the comparison protocol.

    from ssm_metarl.adapt import compare_adaptation
    from ssm_metarl.results import format_table
    results = compare_adaptation(policy, "navigation-2d", get_family("navigation-2d").test[:10])
    print(format_table(results))
"""

from ssm_metarl.adapt.evaluate import (
    Mode,
    adapt_checkpoint,
    compare_adaptation,
    comparison_header,
    evaluate_adaptation,
    save_results,
    scratch_ppo_returns,
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
from ssm_metarl.adapt.standard import AdaptationRun, StandardAdapter, surrogate_loss, task_episodes
from ssm_metarl.adapt.supervised import AdaptationConfig, Adapter

__all__ = [
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
    "comparison_header",
    "evaluate_adaptation",
    "fill_buffer",
    "make_adapter",
    "replay_log_prob",
    "replay_loss",
    "save_results",
    "scratch_ppo_returns",
    "surrogate_loss",
    "task_episodes",
]
