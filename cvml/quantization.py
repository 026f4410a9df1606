"""The quantization methods cvml knows, by name, with what each can do.

Entries are light (no torch import): the recipe validator and the model loader
(`cvml.modelio`) read them, and the backend module named in `backend` is imported only
when a method runs — a plugin entry by name, so the ground floor never imports the
quantize area. A backend module exposes
`quantize_model(model, tokenizer, calibration, spec)`, `save_model(model, folder, spec)`
and `load_model(folder, device)`.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from types import ModuleType

from cvml.errors import ConfigError, QuantizeError
from cvml.registry.refs import did_you_mean


@dataclass(frozen=True)
class Method:
    """One method: the bits it stores, whether it reads calibration data, where it runs."""

    name: str
    summary: str
    bits: tuple[int, ...]
    default_bits: int
    backend: str  # module holding quantize_model / save_model / load_model
    calibrated: bool
    devices: tuple[str, ...]
    requires: tuple[str, ...] = ()  # importable modules the method needs
    extra: str | None = None  # the cvml extra that installs them

    def module(self) -> ModuleType:
        """The backend module, after checking its optional dependencies are installed.

        Raises:
            QuantizeError: a required package is missing (the hint names the pip extra).
        """
        missing = [name for name in self.requires if importlib.util.find_spec(name) is None]
        if missing:
            raise QuantizeError(
                f"method {self.name!r} needs {', '.join(missing)}, which is not installed",
                hint=f"pip install cvml[{self.extra}]" if self.extra else f"pip install {' '.join(missing)}",
            )
        return importlib.import_module(self.backend)


METHODS: dict[str, Method] = {
    method.name: method
    for method in (
        Method(
            name="gptq",
            summary="GPTQ through optimum on GPT-QModel: error-compensated rounding from in-domain calibration data",
            bits=(2, 3, 4, 8),
            default_bits=4,
            backend="cvml.quantize.gptq",
            calibrated=True,
            devices=("cpu", "cuda"),
            requires=("gptqmodel", "optimum"),
            extra="gptq",
        ),
        Method(
            name="rtn",
            summary="round-to-nearest at the same bits and groups, stored as a GPTQ checkpoint: GPTQ's baseline",
            bits=(2, 3, 4, 8),
            default_bits=4,
            backend="cvml.quantize.gptq",
            calibrated=False,
            devices=("cpu", "cuda"),
            requires=("gptqmodel", "optimum"),
            extra="gptq",
        ),
        Method(
            name="int8",
            summary="int8 weights per output channel, int8 activations per token (torch dynamic quantization): CPU serving",
            bits=(8,),
            default_bits=8,
            backend="cvml.quantize.int8",
            calibrated=False,
            devices=("cpu",),
        ),
    )
}


def get_method(name: str) -> Method:
    """The method called `name`.

    Raises:
        ConfigError: unknown name, with the closest known one and the full list.
    """
    try:
        return METHODS[name]
    except KeyError:
        raise ConfigError(
            f"unknown quantization method {name!r}", hint=did_you_mean(name, list(METHODS), "methods")
        ) from None
