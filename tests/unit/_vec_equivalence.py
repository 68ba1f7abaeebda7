"""Shared check of the batched vector envs (``make_vec_env(..., fast=True)``) against the SyncVectorEnv."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def assert_same_vec_step(step_s: tuple, step_f: tuple, final_info_keys: Sequence[str] = ()) -> None:
    """The two vector steps' observations, rewards and flags are bitwise equal (with their dtypes), and so are
    the ended episodes' final observations and the ``final_info`` entries named."""
    for a, b in zip(step_s[:4], step_f[:4]):
        np.testing.assert_array_equal(a, b)
        assert np.asarray(a).dtype == np.asarray(b).dtype
    info_s, info_f = step_s[4], step_f[4]
    assert ("_final_obs" in info_s) == ("_final_obs" in info_f)
    if "_final_obs" in info_s:
        np.testing.assert_array_equal(info_s["_final_obs"], info_f["_final_obs"])
        for b in np.flatnonzero(info_s["_final_obs"]):
            np.testing.assert_array_equal(info_s["final_obs"][b], info_f["final_obs"][b])
            for key in final_info_keys:
                assert info_s["final_info"][key][b] == info_f["final_info"][key][b], key
