"""Every config field, fed bad input (NaN, infinities, 0, negatives, huge numbers, wrong types, unknown choices),
raises ConfigError naming the field; good input is kept exactly as given. Property-tested with hypothesis."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, Literal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ssm_metarl.cli import AdaptCommand, AppCommand, DemoCommand, EvalConfig, EvaluateCommand
from ssm_metarl.config import (
    AdaptConfig,
    Checked,
    MAMLConfig,
    ModelConfig,
    PGConfig,
    PPOConfig,
    Range,
    RunConfig,
    field_specs,
    scale_budget,
)
from ssm_metarl.errors import ConfigError

DEFAULTS: dict[type, Checked] = {
    RunConfig: RunConfig(),
    ModelConfig: ModelConfig(),
    PPOConfig: PPOConfig(),
    PGConfig: PGConfig(),
    AdaptConfig: AdaptConfig(),
    MAMLConfig: MAMLConfig(),
    EvalConfig: EvalConfig(),
    AdaptCommand: AdaptCommand("cartpole-ssm"),
    EvaluateCommand: EvaluateCommand("runs/x/final"),
    DemoCommand: DemoCommand(),
    AppCommand: AppCommand(),
}
FIELDS = [(cls, name) for cls in DEFAULTS for name in field_specs(cls)]


def _parts(tp: Any) -> tuple[Any, list[Any], bool]:
    """(bare type, metadata, whether None is allowed)."""
    meta: list[Any] = []
    optional = False
    while True:
        if typing.get_origin(tp) is typing.Annotated:
            tp, *more = typing.get_args(tp)
            meta += more
        elif typing.get_origin(tp) in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            optional = optional or len(args) < len(typing.get_args(tp))
            tp = args[0]
        else:
            return tp, meta, optional


def _bounds(meta: list[Any]) -> tuple[float, float]:
    r = next((m for m in meta if isinstance(m, Range)), Range())
    lo = r.gt if r.gt is not None else r.ge if r.ge is not None else -1e12
    hi = r.lt if r.lt is not None else r.le if r.le is not None else 1e12
    return lo, hi


def bad_values(tp: Any) -> st.SearchStrategy:
    base, meta, optional = _parts(tp)
    wrong_types = [st.text(max_size=3), st.lists(st.integers(), max_size=2), st.just({"a": 1})]
    if not optional:
        wrong_types.append(st.none())
    if base is bool:
        return st.one_of(*wrong_types, st.integers(), st.floats(allow_nan=True))
    if typing.get_origin(base) is Literal:
        choices = typing.get_args(base)
        return st.one_of(st.text(max_size=8).filter(lambda s: s not in choices), st.integers(), st.none())
    if base is str:
        return st.one_of(st.just(""), st.integers(), st.floats(), *([] if optional else [st.none()]))
    if typing.get_origin(base) is tuple:
        return st.one_of(st.lists(st.integers(), min_size=1, max_size=2), st.tuples(st.text(min_size=1)))
    if isinstance(base, type) and issubclass(base, Checked):
        return st.one_of(st.just({}), st.none(), st.integers())
    lo, hi = _bounds(meta)
    below = st.floats(max_value=lo, exclude_max=True, allow_nan=False, allow_infinity=False, width=64)
    above = st.floats(min_value=hi, exclude_min=True, allow_nan=False, allow_infinity=False, width=64)
    if base is int:
        out = [st.integers(max_value=math.ceil(lo) - 1), st.integers(min_value=math.floor(hi) + 1)]
        out += [
            st.just(10**30),
            st.just(-(10**30)),
            st.booleans(),
            st.floats().filter(lambda x: x != int(x) if math.isfinite(x) else True),
        ]
        return st.one_of(*out, *wrong_types)
    strict_lo = next((m.gt for m in meta if isinstance(m, Range) and m.gt is not None), None)
    edge = [st.just(strict_lo)] if strict_lo is not None else []
    nonfinite = [st.just(math.nan), st.just(math.inf), st.just(-math.inf), st.just(1e308 * 10)]
    return st.one_of(below, above, *edge, *nonfinite, st.booleans(), *wrong_types)


def good_values(tp: Any) -> st.SearchStrategy:
    base, meta, optional = _parts(tp)
    maybe_none = [st.none()] if optional else []
    if base is bool:
        return st.booleans()
    if typing.get_origin(base) is Literal:
        return st.sampled_from(typing.get_args(base))
    if base is str:
        return st.one_of(st.text(alphabet="abc/-_.", min_size=1, max_size=10), *maybe_none)
    if typing.get_origin(base) is tuple:
        return st.tuples(st.integers(0, 100), st.integers(0, 100))
    if isinstance(base, type) and issubclass(base, Checked):
        return st.just(DEFAULTS[base])
    lo, hi = _bounds(meta)
    if base is int:
        return st.one_of(st.integers(math.ceil(lo), min(math.floor(hi), math.ceil(lo) + 10**6)), *maybe_none)
    r = next((m for m in meta if isinstance(m, Range)), Range())
    floats = st.floats(
        min_value=lo,
        max_value=hi,
        exclude_min=r.gt is not None,
        exclude_max=r.lt is not None,
        allow_nan=False,
    )
    return st.one_of(floats, *maybe_none)


@pytest.mark.parametrize(("cls", "name"), FIELDS, ids=[f"{c.__name__}.{n}" for c, n in FIELDS])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_bad_values_raise_config_error_naming_the_field(cls, name, data):
    value = data.draw(bad_values(field_specs(cls)[name]), label=name)
    with pytest.raises(ConfigError, match=rf"{cls.__name__}\.{name}|{name}"):
        dataclasses.replace(DEFAULTS[cls], **{name: value})


@pytest.mark.parametrize(("cls", "name"), FIELDS, ids=[f"{c.__name__}.{n}" for c, n in FIELDS])
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_good_values_are_kept_exactly_or_a_cross_field_rule_names_them(cls, name, data):
    value = data.draw(good_values(field_specs(cls)[name]), label=name)
    try:
        cfg = dataclasses.replace(DEFAULTS[cls], **{name: value})
    except (
        ConfigError
    ) as e:  # a rule between fields (num_minibatches divides num_envs, resume needs out_dir, ...)
        assert name in str(e), str(e)
        return
    got = getattr(cfg, name)
    assert got == value and type(got) is type(value)


def test_replace_reaches_nested_sections_and_rejects_unknown_fields():
    cfg = MAMLConfig().replace(inner__lr=0.5, model__kind="gru", run__seed=3)
    assert (cfg.inner.lr, cfg.model.kind, cfg.run.seed) == (0.5, "gru", 3)
    with pytest.raises(ConfigError, match="its fields are"):
        PPOConfig().replace(num_steps=64)
    with pytest.raises(ConfigError, match="no config section"):
        PPOConfig().replace(inner__lr=0.5)


@pytest.mark.parametrize("cls", [PPOConfig, PGConfig, MAMLConfig, AdaptConfig, RunConfig, ModelConfig])
def test_to_dict_from_dict_round_trip_and_strict_keys(cls):
    cfg = DEFAULTS[cls]
    assert cls.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="has no fields"):
        cls.from_dict({**cfg.to_dict(), "typo": 1})


def test_budget_scale_keeps_at_least_one_update():
    cfg = PPOConfig(total_steps=150_000)
    assert (
        scale_budget(cfg, 0.01).total_steps == 1500 and scale_budget(cfg, 1e-9).total_steps == cfg.batch_size
    )
    assert scale_budget(MAMLConfig(meta_iterations=100), 0.001).meta_iterations == 1
    for bad in (0.0, -1.0, math.nan):
        with pytest.raises(ConfigError, match="budget scale"):
            scale_budget(cfg, bad)
