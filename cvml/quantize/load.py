"""Reading back a folder written by `cvml quantize`: the manifest names the method, the
method's backend knows its format. `cvml.modelio.load_for_inference` calls this for every
folder whose manifest says `"kind": "quantize"`, so serve, bench and abtest load
quantized models the same way as any other."""

from __future__ import annotations

from pathlib import Path

from cvml.errors import ModelError


def load_quantized(folder: Path, device: str):
    """The quantized model in `folder`, in eval mode, on `device`.

    Args:
        folder: a folder written by `cvml quantize` (manifest.json with kind "quantize").
        device: "cpu", "cuda" or "cuda:N" (already resolved from "auto").

    Raises:
        ModelError: the manifest does not name a known method.
        QuantizeError: the method's optional dependencies are not installed.
        DeviceError: the method cannot run on `device`.
    """
    from cvml.modelio import read_manifest
    from cvml.quantize.methods import METHODS

    folder = Path(folder)
    name = (read_manifest(folder).get("quantize") or {}).get("method")
    method = METHODS.get(name)
    if method is None:
        raise ModelError(
            f"{folder}/manifest.json does not name a quantization method cvml knows ({name!r})",
            hint=f"cvml writes one of {', '.join(METHODS)}; re-run cvml quantize for this model.",
        )
    return method.module().load_model(folder, device)
