"""Seed 004's usage example, working for real on navigation-2d (tiny budget)."""

import pytest
import torch

from ssm_metarl.envs.tasks import get_family
from ssm_metarl.meta.seed_api import MetaMAMLTrainer, SSMMetaPolicy, TaskBatch


def test_seed_004_example():
    torch.manual_seed(0)
    dist = get_family("navigation-2d")
    policy = SSMMetaPolicy(state_dim=2, action_dim=2, family="navigation-2d", hidden_dim=16, ssm_state_dim=8)
    trainer = MetaMAMLTrainer(policy, meta_lr=1e-3, inner_lr=1e-2, inner__episodes=4, outer_epochs=1)
    task_batch = TaskBatch(dist.train[:8], batch_size=2)
    before = [p.detach().clone() for p in policy.parameters()]
    meta_losses = trainer.meta_train(task_batch, num_meta_iterations=2)
    assert len(meta_losses) == 2 and all(isinstance(x, float) for x in meta_losses)
    assert any(not torch.equal(a, b) for a, b in zip(before, policy.parameters()))
    adapted_policy = trainer.adapt_to_new_task(dist.test[0])
    assert adapted_policy is not policy
    assert any(not torch.equal(a, b) for a, b in zip(adapted_policy.parameters(), policy.parameters()))


def test_seed_004_dimension_mismatch_is_refused():
    with pytest.raises(ValueError, match="observation size 2"):
        SSMMetaPolicy(state_dim=84, action_dim=4, family="navigation-2d")


def test_task_batch_rejects_mixed_families():
    with pytest.raises(ValueError, match="one family"):
        TaskBatch(get_family("navigation-2d").train[:2] + get_family("cartpole-physics").train[:2], 2)
