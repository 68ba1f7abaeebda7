"""The seed 003 MetaMAML example runs as written (imports from ssm_metarl) and meta-learning really learns."""

import pytest
import torch
import torch.nn.functional as F

from ssm_metarl.meta.supervised import MetaMAML
from ssm_metarl.models.neural_ssm import StateSpaceModel


def test_seed_003_example():
    model = StateSpaceModel(state_dim=64, input_dim=32, output_dim=16, device="cpu")
    maml = MetaMAML(model, inner_lr=0.01, outer_lr=0.001)
    support_x, support_y = torch.randn(4, 10, 32), torch.randn(4, 10, 16)
    query_x, query_y = torch.randn(4, 10, 32), torch.randn(4, 10, 16)
    tasks = []
    for i in range(4):
        tasks.append((support_x[i : i + 1], support_y[i : i + 1], query_x[i : i + 1], query_y[i : i + 1]))
    initial_hidden = model.init_hidden(batch_size=4)
    before = [p.detach().clone() for p in model.parameters()]
    loss = maml.meta_update(tasks=tasks, initial_hidden_state=initial_hidden, loss_fn=F.mse_loss)
    assert isinstance(loss, float) and loss > 0
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters()) if a.numel() > 1)


def test_initial_state_of_the_wrong_batch_is_refused():
    model = StateSpaceModel(state_dim=8, input_dim=3, output_dim=2)
    maml = MetaMAML(model, inner_lr=0.01, outer_lr=0.001)
    task = (torch.randn(2, 5, 3), torch.randn(2, 5, 2), torch.randn(2, 5, 3), torch.randn(2, 5, 2))
    with pytest.raises(ValueError, match="sum to 4"):
        maml.meta_update([task, task], initial_hidden_state=model.init_hidden(3))
    states = maml.task_hidden_states([task, task], model.init_hidden(4))
    assert [s.shape[0] for s in states] == [2, 2]


def test_adaptation_lowers_support_loss_and_meta_training_helps_adaptation():
    """Sine-like tasks y = a * x: after meta-training, one inner step fits a new task better than before."""
    torch.manual_seed(0)
    model = StateSpaceModel(state_dim=8, input_dim=1, output_dim=1, hidden_dim=16)
    maml = MetaMAML(model, inner_lr=0.1, outer_lr=0.01, inner_steps=1)

    def task(a):
        xs = [torch.randn(4, 6, 1) for _ in range(2)]
        return xs[0], a * xs[0], xs[1], a * xs[1]

    new = task(1.7)

    def adapted_query_loss():
        params = maml.adapt_task(new[0], new[1])
        return float(maml._loss(params, new[2], new[3], model.init_hidden(4), F.mse_loss))

    sx, sy = new[0], new[1]
    before_step = float(maml._loss(dict(model.named_parameters()), sx, sy, model.init_hidden(4), F.mse_loss))
    after_step = float(maml._loss(maml.adapt_task(sx, sy), sx, sy, model.init_hidden(4), F.mse_loss))
    assert after_step < before_step
    untrained = adapted_query_loss()
    # 60 meta-updates (was 150): this test's code with seed 0 (generator seed 1): adapted query loss / before
    # meta-training 0.138 after 60 updates (0.087 after 50, 0.078 after 150); seeds 1 and 2 (generators 2, 3):
    # 0.361 and 0.236 after 60 (0.364 and 0.261 after 150; the ratio is not monotone: seed 1 has 0.591 at 75)
    g = torch.Generator().manual_seed(1)
    for _ in range(60):
        amps = (torch.rand(4, generator=g) * 4 - 2).tolist()
        maml.meta_update([task(a) for a in amps])
    assert adapted_query_loss() < 0.5 * untrained


def test_second_order_is_differentiable_through_the_inner_step():
    model = StateSpaceModel(state_dim=4, input_dim=2, output_dim=2, hidden_dim=8)
    maml = MetaMAML(model, inner_lr=0.1, outer_lr=0.01, first_order=False, inner_steps=2)
    sx, sy = torch.randn(3, 4, 2), torch.randn(3, 4, 2)
    params = maml.adapt_task(sx, sy)
    assert all(p.grad_fn is not None for p in params.values())
