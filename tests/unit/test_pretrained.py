"""The shipped pre-trained models: present, small, loadable offline, and as good as their model cards say."""

import json

import pytest

from ssm_metarl import list_pretrained, load_pretrained
from ssm_metarl.adapt import evaluate_adaptation
from ssm_metarl.config import AdaptConfig
from ssm_metarl.envs.tasks import get_family
from ssm_metarl.models.heads import ActorCritic
from ssm_metarl.pretrained import model_card, pretrained_info, pretrained_path

SHIPPED = ["bandit-ssm", "cartpole-ssm", "navigation-maml-ssm", "navigation-ssm"]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_is_small_and_documented(name):
    assert name in list_pretrained()
    folder = pretrained_path(name)
    assert sum(f.stat().st_size for f in folder.iterdir()) < 1_000_000
    card = model_card(name)
    assert f"make_pretrained.py --only {name}" in card and "seed 0" in card
    info = pretrained_info(name)
    assert info["family"] in card and info["results"]["zero_shot_train"] == pytest.approx(
        json.loads((folder / "results.json").read_text())["zero_shot_train"]
    )
    policy = load_pretrained(name)
    assert isinstance(policy, ActorCritic) and not policy.training


def test_unknown_model_name_lists_the_shipped_ones():
    with pytest.raises(ValueError, match="cartpole-ssm"):
        load_pretrained("cartpole-lstm")


def test_cartpole_model_reproduces_its_card_and_scores_450_zero_shot():
    policy = load_pretrained("cartpole-ssm")
    card = pretrained_info("cartpole-ssm")["results"]
    tasks = get_family("cartpole-physics").train[:5]
    curve = evaluate_adaptation(
        policy, "cartpole-physics", tasks, AdaptConfig(steps=0, episodes=5), seeds=(0,)
    )
    zero_shot = curve.at(0).mean
    assert zero_shot >= 450, zero_shot
    assert zero_shot == pytest.approx(card["zero_shot_train"], abs=25)


def test_navigation_maml_model_adapts_by_one_gradient_step_as_its_card_says():
    """The MAML-trained ssm on held-out goals: the card's own seeds reproduce its figures, and one
    policy-gradient step of its recipe (small lr, learned per-tensor step sizes) gains far more than noise."""
    from ssm_metarl.recipes import adapt_recipe

    info = pretrained_info("navigation-maml-ssm")
    card = info["results"]["test"]["maml"]
    policy = load_pretrained("navigation-maml-ssm")
    assert info["algo"] == "maml" and policy.describe()["learned_step_sizes"]
    cfg = adapt_recipe("navigation-2d", "ssm").replace(steps=1, episodes=info["results"]["eval_trajectories"])
    tasks = get_family("navigation-2d").test[:10]
    curve = evaluate_adaptation(policy, "navigation-2d", tasks, cfg, seeds=(0, 1))
    before, after = (iv.mean for iv in curve.summary())
    assert before == pytest.approx(card["after_0"]["mean"], abs=1e-6)
    assert after == pytest.approx(card["after_1"]["mean"], abs=1e-6)
    assert after > before + 15.0, (before, after)


def test_navigation_model_adapts_in_context_as_its_card_says():
    from ssm_metarl.meta.rl2 import evaluate_in_context

    policy = load_pretrained("navigation-ssm")
    info = pretrained_info("navigation-ssm")
    assert info["algo"] == "rl2"
    k, card = info["episodes_per_trial"], info["results"]
    tasks = get_family("navigation-2d").train[: card["eval_tasks_per_split"]]
    returns = evaluate_in_context(policy, "navigation-2d", tasks, k, seeds=card["eval_seeds"])
    first, second = (iv.mean for iv in returns.summary()[:2])
    assert first == pytest.approx(card["train"]["episodes"][0]["mean"], abs=1e-6)  # the card's own seeds
    assert second == pytest.approx(card["train"]["episodes"][1]["mean"], abs=1e-6)
    # it learns the goal within the trial, with no gradient step: episode 2 costs at most half of episode 1
    # (a policy that finds most goals in episode 1 has little absolute gain left: -2.6 -> -1.0 on the card)
    assert second > 0.5 * first, (first, second)


def test_bandit_model_plays_held_out_bandits_as_its_card_says():
    """In context on bandits it has never seen: far above random, near Thompson sampling (no gradient step)."""
    from ssm_metarl.meta.rl2 import evaluate_in_context

    info = pretrained_info("bandit-ssm")
    card = info["results"]["test"]
    assert info["algo"] == "rl2" and info["episodes_per_trial"] == 1
    tasks = get_family(info["family"]).test[:10]
    total = evaluate_in_context(load_pretrained("bandit-ssm"), info["family"], tasks, 1, seeds=(0, 1))
    mean = total.summary()[0].mean
    assert mean == pytest.approx(card["episodes"][0]["mean"], abs=1e-6)  # the card's own seeds
    assert mean > card["random"] + 0.5 * (card["oracle"] - card["random"])
    assert mean > 0.85 * card["thompson"]


@pytest.mark.parametrize("name", SHIPPED)
def test_model_card_usage_snippet_runs(name, capsys):
    card = model_card(name)
    snippet = card.split("```python\n", 1)[1].split("```", 1)[0]
    exec(compile(snippet, f"{name}/README.md", "exec"), {})
    assert "return on a held-out task" in capsys.readouterr().out
