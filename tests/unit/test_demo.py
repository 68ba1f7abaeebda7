"""The demo's gradient part on navigation: the shipped MAML ssm walks to held-out goals after adapting."""

import numpy as np

from ssm_metarl.demo import run_demo


def test_demo_draws_the_navigation_paths_before_and_after_adaptation(tmp_path):
    # measured (one goal per split, seed 0, 3 steps of 8 episodes): mean distance to the goal over the last 20
    # steps 0.49 -> 0.09 on the held-out goal (the episode ends at the goal after 53 steps), 0.99 -> 0.23 out of
    # range
    r = run_demo(steps=3, num_tasks=1, seeds=(0,), episodes=8, scratch=False, in_context=None, out=tmp_path)
    assert r.model == "navigation-maml-ssm" and set(r.adapt_paths) == {"test", "out_of_range"}
    for split, (task, (before, after)) in r.adapt_paths.items():
        goal = np.array([task["goal_x"], task["goal_y"]])
        near = [float(np.linalg.norm(p[-20:] - goal, axis=1).mean()) for p in (before, after)]
        assert before.shape == (100, 2) and after.shape[1] == 2, split
        assert near[1] < 0.5 * near[0], (split, near)
    zero_shot, adapted = (
        r.rows["test"][k].values.mean() for k in ("zero-shot (meta-trained)", "standard, after 3 steps")
    )
    assert adapted > zero_shot + 15.0, (zero_shot, adapted)
    assert (tmp_path / "adaptation.png").stat().st_size > 10_000
