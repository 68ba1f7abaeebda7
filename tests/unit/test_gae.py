"""GAE and discounted returns against hand computations and against the eq. 16 sum definition."""

from __future__ import annotations

import pytest
import torch

from ssm_metarl.rl.gae import discounted_returns, gae


def _cols(*per_env: list[float]) -> torch.Tensor:
    """Per-env columns -> time-major (T, B)."""
    return torch.tensor(per_env, dtype=torch.float64).T.contiguous()


def _flags(*per_env: list[int]) -> torch.Tensor:
    return torch.tensor(per_env, dtype=torch.bool).T.contiguous()


def _hand_case() -> dict[str, torch.Tensor]:
    """T = 4, B = 3; gamma = lam = 0.5, so gamma * lam = 0.25.

    env 0: terminates at t=1, a new episode runs past the segment end (last_value 4).
    env 1: truncated at t=1 (final_value 8), a new episode runs past the segment end (last_value 2).
    env 2: terminated AND truncated at t=1 (termination wins: final_value 50 ignored), truncated at the
           last step t=3 (final_value 6 is used, last_value 100 ignored).
    """
    return dict(
        reward=_cols([1, 1, 1, 1], [0, 2, 0, 4], [2, 0, 0, 2]),
        value=_cols([2, 2, 2, 2], [1, 2, 4, 0], [4, 0, 2, 2]),
        terminated=_flags([0, 1, 0, 0], [0, 0, 0, 0], [0, 1, 0, 0]),
        truncated=_flags([0, 0, 0, 0], [0, 1, 0, 0], [0, 1, 0, 1]),
        final_value=_cols([0, 0, 0, 0], [0, 8, 0, 0], [0, 50, 0, 6]),
        last_value=torch.tensor([4.0, 2.0, 100.0], dtype=torch.float64),
    )


def test_gae_matches_hand_computation() -> None:
    # delta_t = r_t + 0.5 * V_next - V_t ;  A_t = delta_t + 0.25 * (1 - done_t) * A_{t+1}
    # env 0: t3: 1 + 0.5*4 - 2 = 1             -> A3 = 1
    #        t2: 1 + 0.5*2 - 2 = 0             -> A2 = 0 + 0.25*1 = 0.25
    #        t1: terminated: 1 + 0 - 2 = -1    -> A1 = -1 (trace cut)
    #        t0: 1 + 0.5*2 - 2 = 0             -> A0 = 0 + 0.25*(-1) = -0.25
    # env 1: t3: 4 + 0.5*2 - 0 = 5             -> A3 = 5
    #        t2: 0 + 0.5*0 - 4 = -4            -> A2 = -4 + 0.25*5 = -2.75
    #        t1: truncated: 2 + 0.5*8 - 2 = 4  -> A1 = 4 (trace cut)
    #        t0: 0 + 0.5*2 - 1 = 0             -> A0 = 0 + 0.25*4 = 1
    # env 2: t3: truncated: 2 + 0.5*6 - 2 = 3  -> A3 = 3
    #        t2: 0 + 0.5*2 - 2 = -1            -> A2 = -1 + 0.25*3 = -0.25
    #        t1: terminated: 0 + 0 - 0 = 0     -> A1 = 0
    #        t0: 2 + 0.5*0 - 4 = -2            -> A0 = -2 + 0.25*0 = -2
    expected_adv = _cols([-0.25, -1, 0.25, 1], [1, 4, -2.75, 5], [-2, 0, -0.25, 3])
    expected_ret = _cols([1.75, 1, 2.25, 3], [2, 6, 1.25, 5], [2, 0, 1.75, 5])
    advantage, ret = gae(**_hand_case(), gamma=0.5, lam=0.5)
    torch.testing.assert_close(advantage, expected_adv)
    torch.testing.assert_close(ret, expected_ret)


def test_discounted_returns_match_hand_computation() -> None:
    # gamma = 0.5; G_t = r_t + 0.5 * G_next, G_next replaced at episode ends / the segment end.
    # env 0: G3 = 1 + 0.5*4 = 3; G2 = 1 + 1.5 = 2.5; G1 (terminated) = 1; G0 = 1 + 0.5 = 1.5
    # env 1: G3 = 4 + 0.5*2 = 5; G2 = 0 + 2.5 = 2.5; G1 (truncated) = 2 + 0.5*8 = 6; G0 = 0 + 3 = 3
    # env 2: G3 (truncated) = 2 + 0.5*6 = 5; G2 = 2.5; G1 (terminated) = 0; G0 = 2
    case = _hand_case()
    del case["value"]
    expected = _cols([1.5, 1, 2.5, 3], [3, 6, 2.5, 5], [2, 0, 2.5, 5])
    torch.testing.assert_close(discounted_returns(**case, gamma=0.5), expected)


def test_discounted_returns_without_bootstrap() -> None:
    # final_value=None and last_value=None: returns are sums of the observed rewards only.
    # env 0: G3 = 1; G2 = 1 + 0.5 = 1.5; G1 (terminated) = 1; G0 = 1 + 0.5 = 1.5
    # env 1: G3 = 4; G2 = 2; G1 (truncated) = 2; G0 = 1.   env 2: G3 = 2; G2 = 1; G1 = 0; G0 = 2
    case = _hand_case()
    expected = _cols([1.5, 1, 1.5, 1], [1, 2, 2, 4], [2, 0, 1, 2])
    got = discounted_returns(
        case["reward"], case["terminated"], case["truncated"], final_value=None, last_value=None, gamma=0.5
    )
    torch.testing.assert_close(got, expected)


def _random_case(T: int = 9, B: int = 5, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    truncated = torch.rand(T, B, generator=g) < 0.2
    return dict(
        reward=torch.randn(T, B, generator=g, dtype=torch.float64),
        value=torch.randn(T, B, generator=g, dtype=torch.float64),
        terminated=torch.rand(T, B, generator=g) < 0.2,
        truncated=truncated,
        final_value=torch.randn(T, B, generator=g, dtype=torch.float64) * truncated,
        last_value=torch.randn(B, generator=g, dtype=torch.float64),
    )


def test_gae_with_lambda_one_is_discounted_return_minus_value() -> None:
    case = _random_case()
    advantage, ret = gae(**case, gamma=0.9, lam=1.0)
    value = case.pop("value")
    returns = discounted_returns(**case, gamma=0.9)
    torch.testing.assert_close(advantage, returns - value)
    torch.testing.assert_close(ret, returns)


def test_gae_equals_the_eq16_sum_within_episodes() -> None:
    """A_t = sum_l (gamma lam)^l delta_{t+l}, summed explicitly until the episode ends."""
    c = _random_case(seed=1)
    gamma, lam = 0.9, 0.7
    T, B = c["reward"].shape
    done = c["terminated"] | c["truncated"]
    expected = torch.zeros(T, B, dtype=torch.float64)
    for b in range(B):
        delta = []
        for t in range(T):
            if c["terminated"][t, b]:
                nxt = 0.0
            elif c["truncated"][t, b]:
                nxt = c["final_value"][t, b].item()
            else:
                nxt = c["last_value"][b].item() if t == T - 1 else c["value"][t + 1, b].item()
            delta.append(c["reward"][t, b].item() + gamma * nxt - c["value"][t, b].item())
        for t in range(T):
            total, l = 0.0, 0
            while t + l < T:
                total += (gamma * lam) ** l * delta[t + l]
                if done[t + l, b]:
                    break
                l += 1
            expected[t, b] = total
    advantage, _ = gae(**c, gamma=gamma, lam=lam)
    torch.testing.assert_close(advantage, expected)


@pytest.mark.parametrize(
    ("field", "bad_shape"),
    [("value", (4, 3, 1)), ("value", (3, 4)), ("last_value", (3, 1)), ("final_value", (4,))],
)
def test_gae_shape_mismatch_raises(field: str, bad_shape: tuple[int, ...]) -> None:
    case = _hand_case()
    case[field] = torch.zeros(bad_shape, dtype=torch.float64)
    with pytest.raises(ValueError, match=field):
        gae(**case, gamma=0.5, lam=0.5)


def test_gae_rejects_batch_first_reward_and_bad_discount() -> None:
    case = _hand_case()
    with pytest.raises(ValueError, match="time-major"):
        gae(**{**case, "reward": case["reward"].unsqueeze(-1)}, gamma=0.5, lam=0.5)
    with pytest.raises(ValueError, match="gamma"):
        gae(**case, gamma=1.5, lam=0.5)
