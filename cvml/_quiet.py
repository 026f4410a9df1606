"""Keep library chatter (weight-loading bars, deprecation notices, tied-weight notes) off
the user's terminal; cvml reports what matters itself. CVML_DEBUG=1 keeps everything."""

from __future__ import annotations

import importlib.util
import logging
import os
import warnings


def quiet_libraries() -> None:
    if os.environ.get("CVML_DEBUG") == "1":
        return
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"(transformers|peft|accelerate)\b")
    warnings.filterwarnings("ignore", category=UserWarning, module=r"(peft|accelerate)\b")
    for name in ("accelerate", "peft"):
        logging.getLogger(name).setLevel(logging.ERROR)


# Loggers that warn at import time about optional kernels cvml never uses (torchao, pulled in
# by GPT-QModel and imported by peft, cannot load its CUDA extensions on a CPU machine).
IMPORT_NOISE = ("torchao", "torch.utils._pytree")


def quiet_import_noise() -> None:
    """Silence import-time warnings before any heavy library loads; no import needed."""
    if os.environ.get("CVML_DEBUG") == "1":
        return
    for name in IMPORT_NOISE:
        logging.getLogger(name).setLevel(logging.ERROR)
    # peft imports GPT-QModel whenever it is installed (to recognise its layers), and
    # GPT-QModel prints a banner through LogBar at import: lower LogBar before that happens.
    if importlib.util.find_spec("logbar") is not None:
        from logbar import LogBar

        LogBar.shared().setLevel(logging.ERROR)
