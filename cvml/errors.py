"""The one error hierarchy. Every error a user can act on is a `CvmlError` with a hint.

The CLI (`cvml/cli/main.py`) prints `message` and `hint` and exits with `exit_code`;
the traceback only appears with `CVML_DEBUG=1`.
"""

from __future__ import annotations


class CvmlError(Exception):
    """Base class: a message a user can act on, an optional hint, an exit code."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class ConfigError(CvmlError):
    """A recipe, flag or override is wrong. Exit code 2, like any usage error."""

    exit_code = 2


class RecipeError(ConfigError):
    """A recipe file failed to load or validate; `problems` lists every (path, message)."""

    def __init__(self, message: str, problems: list[tuple[str, str]] | None = None, hint: str | None = None):
        super().__init__(message, hint)
        self.problems = problems or []


class DataError(CvmlError):
    """A dataset is missing, unreadable, or has no usable rows."""


class ModelError(CvmlError):
    """A model path or hub id cannot be loaded, or lacks what cvml needs (e.g. a chat template)."""


class DeviceError(CvmlError):
    """The requested device (e.g. CUDA) is not available here."""


class ResumeError(CvmlError):
    """A checkpoint cannot be resumed: missing, incomplete, or made by a different recipe."""


class RegistryError(CvmlError):
    """A model name, version or alias is unknown, or a registry operation is not possible."""


class QuantizeError(CvmlError):
    """A quantization cannot run: a missing optional dependency, a layer shape the method
    cannot handle, or a saved model that does not reproduce the quantized one."""


class MonitorError(CvmlError):
    """`cvml monitor` cannot judge: an empty or too small window, no reference, a log
    without what a signal needs. Exit code 2: exit 1 means drift or a quality alert."""

    exit_code = 2
