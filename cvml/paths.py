"""Where cvml keeps its own state (registry, request log): `$CVML_HOME`, else `~/.cvml`."""

from __future__ import annotations

import os
from pathlib import Path


def cvml_home() -> Path:
    """The cvml state folder: `$CVML_HOME` if set and non-empty, else `~/.cvml`.

    Read at call time (not import time) so tests and users can switch homes per process.
    The folder is not created here; whoever writes into it does that.
    """
    home = os.environ.get("CVML_HOME")
    return Path(home).expanduser() if home else Path.home() / ".cvml"
