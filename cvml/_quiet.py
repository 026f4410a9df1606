"""Keep library chatter (weight-loading bars, deprecation notices, tied-weight notes) off
the user's terminal; cvml reports what matters itself. CVML_DEBUG=1 keeps everything."""

from __future__ import annotations

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
