"""The errors a user can act on, apart from the ones that mean a bug.

Every boundary of the package (configs, checkpoints, env ids, task families, spaces, CLI and app input)
raises a subclass of :class:`InputError` with a message that says what is wrong and what to do; the CLI
turns them into ``error: ...`` and exit status 2, the app into a short message. Anything else that escapes
is an internal error and keeps its traceback.

:class:`DivergenceError` is different: the input was valid but the run diverged (a non-finite loss,
gradient or parameter). It names the update where it happened and the last good checkpoint.
"""

from __future__ import annotations


class InputError(ValueError):
    """Input the package cannot use; the message says why and what to change."""


class ConfigError(InputError):
    """A configuration field has a value outside its documented type or range."""


class CheckpointError(InputError):
    """A checkpoint that cannot be loaded: missing, corrupt, or built for another shape or version."""


class EnvError(InputError):
    """An env id that is not registered or cannot be built here, or an unknown task family or task."""


class SpaceError(InputError):
    """A Gymnasium space the policies do not support, or a policy built for other spaces than the env's."""


class DivergenceError(RuntimeError):
    """A run produced a non-finite loss, gradient or parameter; it stopped instead of training on."""

    def __init__(self, message: str, last_checkpoint: str | None = None) -> None:
        if last_checkpoint is not None:
            message = f"{message}; the last good checkpoint is {last_checkpoint}"
        super().__init__(message)
        self.last_checkpoint = last_checkpoint


__all__ = ["CheckpointError", "ConfigError", "DivergenceError", "EnvError", "InputError", "SpaceError"]
