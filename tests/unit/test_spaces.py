"""Spaces as JSON: every supported space round-trips exactly; an unsupported space or a malformed description
raises SpaceError naming it. Property-tested with hypothesis."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ssm_metarl.errors import SpaceError
from ssm_metarl.spaces import encode_one, encoded_bounds, flat_dim, space_from_info, space_info

bounds = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, width=32)


@st.composite
def boxes(draw) -> gym.spaces.Box:
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=3)))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    n = int(np.prod(shape))
    low = np.array(draw(st.lists(bounds, min_size=n, max_size=n)), dtype=dtype)
    span = np.array(draw(st.lists(st.floats(0.0, 1e3, width=32), min_size=n, max_size=n)), dtype=dtype)
    high = low + span
    if draw(st.booleans()):
        low[0], high[-1] = -np.inf, np.inf
    return gym.spaces.Box(low.reshape(shape), high.reshape(shape), shape, dtype)


discretes = st.builds(gym.spaces.Discrete, st.integers(1, 1000), start=st.integers(-5, 5))
multi_discretes = st.lists(st.integers(1, 6), min_size=1, max_size=4).map(
    lambda n: gym.spaces.MultiDiscrete(n)
)
multi_binaries = st.integers(1, 8).map(gym.spaces.MultiBinary)
leaves = st.one_of(boxes(), discretes, multi_discretes, multi_binaries)
composites = st.one_of(
    st.lists(leaves, min_size=1, max_size=3).map(lambda parts: gym.spaces.Tuple(parts)),
    st.dictionaries(st.sampled_from("abcd"), leaves, min_size=1, max_size=3).map(gym.spaces.Dict),
)


@settings(max_examples=80, deadline=None)
@given(space=st.one_of(leaves, composites))
def test_supported_spaces_round_trip_through_json_and_encode_their_samples(space):
    back = space_from_info(json.loads(json.dumps(space_info(space))))
    assert back == space and flat_dim(back) == flat_dim(space)
    if isinstance(space, gym.spaces.Box):
        assert back.dtype == space.dtype
        np.testing.assert_array_equal(back.low, space.low)
        np.testing.assert_array_equal(back.high, space.high)
    space.seed(0)
    x = encode_one(space, space.sample())
    assert x.shape == (flat_dim(space),) and x.dtype == np.float32
    low, high = encoded_bounds(space)
    assert low.shape == high.shape == x.shape


def test_encodings_in_the_documented_order():
    space = gym.spaces.Dict({"d": gym.spaces.Discrete(3, start=1), "m": gym.spaces.MultiDiscrete([2, 3])})
    np.testing.assert_array_equal(
        encode_one(space, {"d": 2, "m": np.array([1, 0])}), [0, 1, 0, 0, 1, 1, 0, 0]
    )
    pair = gym.spaces.Tuple((gym.spaces.MultiBinary(2), gym.spaces.Box(-1, 1, (2, 2))))
    np.testing.assert_array_equal(encode_one(pair, (np.array([1, 0]), np.eye(2))), [1, 0, 1, 0, 0, 1])


UNSUPPORTED = [
    gym.spaces.Text(5),
    gym.spaces.Graph(gym.spaces.Box(0, 1, (2,)), None),
    gym.spaces.Sequence(gym.spaces.Discrete(2)),
]


@pytest.mark.parametrize("space", UNSUPPORTED, ids=lambda s: type(s).__name__)
def test_unsupported_spaces_are_named(space):
    with pytest.raises(SpaceError, match=type(space).__name__):
        space_info(space)


@settings(max_examples=60, deadline=None)
@given(
    info=st.one_of(
        st.none(),
        st.integers(),
        st.text(max_size=4),
        st.fixed_dictionaries({"type": st.sampled_from(["Box", "Discrete", "Cube"])}),
        st.fixed_dictionaries(
            {
                "type": st.just("Box"),
                "shape": st.one_of(st.just([2]), st.just("x"), st.just([-1])),
                "low": st.one_of(st.just([0.0]), st.just(["a", "b"]), st.just([0.0, 0.0])),
                "high": st.one_of(st.just([1.0, 1.0]), st.none()),
            }
        ),
        st.fixed_dictionaries(
            {"type": st.just("Discrete"), "n": st.one_of(st.just(0), st.just("two"), st.none())}
        ),
    )
)
def test_malformed_descriptions_raise_space_error(info):
    try:
        space = space_from_info(info)
    except SpaceError:
        return
    # only a description that really describes a space may load
    assert isinstance(space, gym.spaces.Space) and space_from_info(space_info(space)) == space
