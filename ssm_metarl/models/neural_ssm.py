"""The seed projects' ``StateSpaceModel``, kept under its name but honestly described.

Despite the name this is **not** a structured state-space model (see ``ssm.py`` for that): it is a
*residual RNN* whose state transition is an MLP. Shape letters: B batch, T time, D input features,
N state size, F MLP width (the seed's ``hidden_dim``), O output features.

::

    h_t = tanh(a * h_{t-1} + W2 tanh(W1 h_{t-1} + b1) + B x_t + b)     a = sigmoid(decay_logit) in (0, 1)^N
    y_t = V2 tanh(V1 h_t + c1) + D x_t + d

The seeds' recurrence ``h_t = MLP(h_{t-1}) + Linear(x_t)`` was unbounded; the outer ``tanh`` keeps
``|h_t| <= 1`` for any input and any weights. A reset zeroes ``h`` before the step.

Two calling conventions share one ``forward``:

- seed style: ``y, h = model(x, h)`` with ``x`` (B, D) for one step or (B, T, D) for a sequence and
  ``h`` a (B, N) tensor from :meth:`StateSpaceModel.init_hidden`; the new state comes back as a tensor.
- contract style (:class:`~ssm_metarl.models.base.SequenceModel`): ``state = (h,)`` from
  :meth:`StateSpaceModel.initial_state`, ``forward(x, state, reset)`` / ``step(x, state, reset)``;
  the new state comes back as a tuple.

Weights are saved as safetensors with the constructor arguments in the file's metadata and in a JSON
file beside it; ``model.load(path)`` loads in place, ``StateSpaceModel.load(path)`` builds a new model.
Nothing is ever unpickled.
"""

from __future__ import annotations

import functools
import json
import math
import os
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

from ssm_metarl.checkpoint import atomic_file_write
from ssm_metarl.models.base import State, check_inputs, param_like

_FORMAT = "ssm_metarl.StateSpaceModel/1"
_CONFIG_KEYS = ("state_dim", "input_dim", "output_dim", "hidden_dim")


class _InstanceOrClassMethod:
    """A method that dispatches on how it is reached: ``obj.m(...)`` calls ``on_instance(obj, ...)``,
    ``Cls.m(...)`` calls ``on_class(Cls, ...)``. The seeds called ``load`` both ways; both must load."""

    def __init__(self, on_instance: Callable[..., Any], on_class: Callable[..., Any], doc: str) -> None:
        self.on_instance, self.on_class, self.__doc__ = on_instance, on_class, doc

    def __get__(self, obj: Any, objtype: type | None = None) -> Callable[..., Any]:
        if obj is None:
            return types.MethodType(self.on_class, objtype)
        return types.MethodType(self.on_instance, obj)


def _write_text(tmp: str, text: str) -> None:
    Path(tmp).write_text(text)


def _paths(path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """(weights file, JSON config file). A directory holds ``model.safetensors`` + ``config.json``; any
    other path (``model.safetensors``, the seeds' ``model.pth``) is the weights file itself, and the
    config sits beside it as ``<name>.json``."""
    p = Path(path)
    if p.is_dir():
        return p / "model.safetensors", p / "config.json"
    return p, p.with_name(p.name + ".json")


def _read_checkpoint(path: str | os.PathLike[str]) -> tuple[dict[str, Tensor], dict[str, int] | None, Path]:
    """Tensors, saved constructor arguments (None if none were saved) and the weights path."""
    weights, config_file = _paths(path)
    if not weights.is_file():
        raise FileNotFoundError(f"no StateSpaceModel checkpoint at {weights}")
    try:
        with safe_open(str(weights), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as e:
        with open(weights, "rb") as fh:
            head = fh.read(4)
        what = (
            "a pickled PyTorch file (torch.save), which this package never loads: unpickling can run "
            "arbitrary code; re-save the weights with safetensors"
            if head[:2] == b"PK" or head[:1] == b"\x80"
            else "truncated or corrupt"
        )
        raise ValueError(f"{weights} is not a readable safetensors file ({e}): it is {what}") from e
    raw = meta.get("config")
    if raw is None and config_file.is_file():
        raw = config_file.read_text()
    if raw is None:
        return tensors, None, weights
    try:
        config = json.loads(raw)
        config = {k: int(config[k]) for k in _CONFIG_KEYS}
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(
            f"the config saved with {weights} is malformed ({e!r}); expected {_CONFIG_KEYS}"
        ) from e
    return tensors, config, weights


def _load_into(self: StateSpaceModel, path: str | os.PathLike[str]) -> StateSpaceModel:
    """``model.load(path)``: copy the saved weights into ``model`` (device and dtype kept); returns it."""
    tensors, saved, weights = _read_checkpoint(path)
    self._check_and_copy(tensors, saved, weights)
    return self


def _load_new(
    cls: type[StateSpaceModel], path: str | os.PathLike[str], device: str | torch.device | None = None
) -> StateSpaceModel:
    """``StateSpaceModel.load(path)``: a new model built from the saved sizes, with the saved weights."""
    tensors, saved, weights = _read_checkpoint(path)
    if saved is None:
        raise ValueError(
            f"{weights} carries no model config (no metadata, no {weights.name}.json beside it): build "
            "the model with its sizes and call model.load(path)"
        )
    model = cls(**saved)  # type: ignore[arg-type]
    dtype = next(iter(tensors.values())).dtype
    if dtype.is_floating_point:
        model.to(dtype)
    model._check_and_copy(tensors, saved, weights)
    return model.to(device) if device is not None else model


class StateSpaceModel(nn.Module):
    """Residual RNN with an MLP state transition (the seeds' "SSM"); see the module docstring.

    Args:
        state_dim: N, size of the recurrent state h.
        input_dim: D, input features.
        output_dim: O, output features (``output_dim`` is what policy heads receive).
        hidden_dim: F, width of the transition and readout MLPs.
        device: where to put the parameters now; afterwards the device follows the parameters
            (``.to("cuda")`` works as for any module).
    """

    def __init__(
        self,
        state_dim: int,
        input_dim: int,
        output_dim: int,
        hidden_dim: int = 64,
        device: str | torch.device | None = None,
    ) -> None:
        super().__init__()
        self.state_dim, self.input_dim, self.output_dim, self.hidden_dim = (
            state_dim,
            input_dim,
            output_dim,
            hidden_dim,
        )
        self._sizes = (state_dim, output_dim)
        self.input_proj = nn.Linear(input_dim, state_dim + output_dim)  # [B; D] and the biases b, d
        self.trans_in = nn.Linear(state_dim, hidden_dim)  # W1, b1
        self.trans_out = nn.Linear(hidden_dim, state_dim, bias=False)  # W2
        self.read_in = nn.Linear(state_dim, hidden_dim)  # V1, c1
        self.read_out = nn.Linear(hidden_dim, output_dim, bias=False)  # V2
        self.decay_logit = nn.Parameter(torch.full((state_dim,), math.log(0.9 / 0.1)))  # a = 0.9
        for m in (self.input_proj, self.trans_in, self.trans_out, self.read_in, self.read_out):
            nn.init.orthogonal_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        if device is not None:
            self.to(device)

    # -- state -------------------------------------------------------------------------------------

    def config(self) -> dict[str, int]:
        """The constructor arguments that rebuild this model (what ``save`` writes)."""
        return {k: getattr(self, k) for k in _CONFIG_KEYS}

    def init_hidden(self, batch_size: int) -> Tensor:
        """Seed API: a zero state h (B, N) on the parameters' device and dtype."""
        return param_like(self).new_zeros(batch_size, self.state_dim)  # (B, N)

    def initial_state(self, batch_size: int) -> State:
        """Contract API: ``(h,)`` with h (B, N) zeros."""
        return (self.init_hidden(batch_size),)

    # -- computation -------------------------------------------------------------------------------

    def _transition(self, h: Tensor, bx: Tensor, a: Tensor) -> Tensor:
        """h (B, N), bx = B x_t + b (B, N), a (N,) -> next h (B, N). Five ops: this is the acting cost."""
        u = torch.tanh(F.linear(h, self.trans_in.weight, self.trans_in.bias))  # (B, F)
        return torch.tanh(torch.addcmul(torch.addmm(bx, u, self.trans_out.weight.t()), a, h))  # (B, N)

    def _readout(self, h: Tensor, dx: Tensor) -> Tensor:
        """h (..., N), dx = D x + d (..., O) -> y (..., O)."""
        v = torch.tanh(F.linear(h, self.read_in.weight, self.read_in.bias))  # (..., F)
        return dx + F.linear(v, self.read_out.weight)  # (..., O)

    def _project(self, x: Tensor) -> tuple[Tensor, ...]:
        """x (..., D) -> B x + b (..., N), D x + d (..., O)."""
        return F.linear(x, self.input_proj.weight, self.input_proj.bias).split(self._sizes, dim=-1)

    def step(self, x: Tensor, state: State, reset: Tensor) -> tuple[Tensor, State]:
        """x (B, D), state ((B, N),), reset (B,) bool -> y (B, O), ((B, N),)."""
        h = state[0].masked_fill(reset.bool().unsqueeze(-1), 0.0)  # (B, N)
        bx, dx = self._project(x)  # (B, N), (B, O)
        h = self._transition(h, bx, torch.sigmoid(self.decay_logit))  # (B, N)
        v = torch.tanh(F.linear(h, self.read_in.weight, self.read_in.bias))  # (B, F)
        return torch.addmm(dx, v, self.read_out.weight.t()), (h,)  # (B, O)

    def _sequence(self, x: Tensor, h: Tensor, reset: Tensor) -> tuple[Tensor, Tensor]:
        """x (B, T, D), h (B, N), reset (B, T) bool -> y (B, T, O), h (B, N)."""
        bx, dx = self._project(x)  # (B, T, N), (B, T, O)
        a = torch.sigmoid(self.decay_logit)  # (N,)
        keep = (~reset).to(h.dtype).unsqueeze(-1) if bool(reset.any()) else None  # (B, T, 1)
        hs = []
        for t in range(x.shape[1]):
            if keep is not None:
                h = h * keep[:, t]  # (B, N)
            h = self._transition(h, bx[:, t], a)  # (B, N)
            hs.append(h)
        return self._readout(torch.stack(hs, dim=1), dx), h  # (B, T, O), (B, N)

    def forward(
        self, x: Tensor, hidden_state: Tensor | State | None = None, reset: Tensor | None = None
    ) -> tuple[Tensor, Tensor | State]:
        """One step or a sequence, in either calling convention.

        x: (B, D) one step, or (B, T, D) a sequence.
        hidden_state: a (B, N) tensor (seed style: the new state is returned as a tensor), a ``(h,)``
            tuple (contract style: returned as a tuple), or None (zeros; returned as a tensor).
        reset: (B,) or (B, T) bool, True where the state is zeroed before the step; None = no reset.
        Returns y ((B, O) or (B, T, O)) and the new state.
        """
        as_tuple = isinstance(hidden_state, tuple)
        B = x.shape[0]
        h: Any = hidden_state[0] if isinstance(hidden_state, tuple) else hidden_state
        h = self.init_hidden(B) if h is None else h
        if tuple(h.shape) != (B, self.state_dim):
            raise ValueError(
                f"hidden state must be (B, state_dim) = ({B}, {self.state_dim}), got {tuple(h.shape)}"
            )
        if x.dim() == 2:
            if x.shape[1] != self.input_dim:
                raise ValueError(f"expected x of shape (B, {self.input_dim}), got {tuple(x.shape)}")
            reset = torch.zeros(B, dtype=torch.bool, device=x.device) if reset is None else reset
            if tuple(reset.shape) != (B,):
                raise ValueError(f"expected reset of shape ({B},) for one step, got {tuple(reset.shape)}")
            y, (h,) = self.step(x, (h,), reset)
        else:
            reset = torch.zeros(x.shape[:2], dtype=torch.bool, device=x.device) if reset is None else reset
            check_inputs(x, reset, self.input_dim)
            y, h = self._sequence(x, h, reset.bool())
        return y, ((h,) if as_tuple else h)

    # -- persistence -------------------------------------------------------------------------------

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the weights (safetensors, the config in its metadata) and ``<path>.json`` beside them.

        ``path`` may be any file name (``model.safetensors``, or the seeds' ``model.pth``: the file is
        safetensors whatever its name) or an existing directory (then ``model.safetensors`` +
        ``config.json`` inside it). Each file is written to a temporary name and renamed. Returns the
        weights path.
        """
        weights, config_file = _paths(path)
        weights.parent.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        config = json.dumps(self.config())
        atomic_file_write(
            weights, lambda tmp: save_file(tensors, tmp, metadata={"format": _FORMAT, "config": config})
        )
        text = json.dumps(self.config(), indent=2) + "\n"
        atomic_file_write(config_file, functools.partial(_write_text, text=text))
        return weights

    def _check_and_copy(self, tensors: dict[str, Tensor], saved: dict[str, int] | None, where: Path) -> None:
        """Copy ``tensors`` into the parameters after checking names and shapes; say what differs."""
        own = self.state_dict()
        problems = [f"missing {k}" for k in own if k not in tensors]
        problems += [f"unexpected {k}" for k in tensors if k not in own]
        problems += [
            f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
            for k, v in tensors.items()
            if k in own and v.shape != own[k].shape
        ]
        if problems:
            sizes = f"; the checkpoint was saved with {saved}" if saved else ""
            raise ValueError(
                f"{where} does not fit this StateSpaceModel {self.config()}{sizes}: " + ", ".join(problems)
            )
        self.load_state_dict(tensors)

    load = _InstanceOrClassMethod(
        _load_into,
        _load_new,
        """Load weights saved by :meth:`save`; never unpickles.

        ``model.load(path)`` copies them into this model (keeping its device and dtype) and returns it.
        ``StateSpaceModel.load(path, device=None)`` builds a new model from the saved sizes and returns it.
        Raises FileNotFoundError when the file is missing and ValueError when it is corrupt, not
        safetensors, or saved with other sizes (the message lists the mismatching tensors).
        """,
    )


def neural_ssm(input_dim: int, hidden_dim: int = 64, state_dim: int = 64) -> StateSpaceModel:
    """Registry constructor: a :class:`StateSpaceModel` whose ``output_dim`` is ``hidden_dim``."""
    return StateSpaceModel(
        state_dim=state_dim, input_dim=input_dim, output_dim=hidden_dim, hidden_dim=hidden_dim
    )
