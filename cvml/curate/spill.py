"""The rows waiting for dedup, on disk instead of in memory.

Near duplicates can be anywhere in the input, so no row can be written to its split before
every row has been fingerprinted. The driver keeps the fingerprints (a few hundred bytes a row)
and appends the rows here, one JSON line each (the dataset's `COLUMNS`); dedup reads
back the few rows whose facts it must compare, and the split writer streams them all once.
The file is private (0600) inside the output folder, and deleted when the run ends.
"""

from __future__ import annotations

import json
import os
from array import array
from pathlib import Path
from types import SimpleNamespace
from typing import Iterator, Sequence

import numpy as np

from cvml.curate.output import COLUMNS, open_private

SPILL_FILE = ".rows.spill"


class RowSpill:
    """Append-only rows, read back by index or in order."""

    def __init__(self, folder: Path):
        self.path = folder / SPILL_FILE
        self._fh = open_private(self.path, "wb")
        self._starts = array("q")  # byte offset of each row
        self._size = 0
        self._fd: int | None = None

    def __len__(self) -> int:
        return len(self._starts)

    def append(self, lines: bytes, keep: Sequence[bool] | None = None) -> None:
        """Rows as consecutive JSON lines; with `keep`, only the rows it marks True."""
        if keep is not None and not all(keep):
            lines = b"".join(line + b"\n" for line, k in zip(lines.split(b"\n"), keep) if k)
        ends = np.flatnonzero(np.frombuffer(lines, np.uint8) == 10) + 1
        self._starts.extend(([self._size] + (ends[:-1] + self._size).tolist()) if len(ends) else [])
        self._fh.write(lines)
        self._size += len(lines)

    def record(self, i: int) -> SimpleNamespace:
        """Row `i` as an object with the record's fields (for dedup's fact comparison)."""
        if self._fd is None:
            self._fh.flush()
            self._fd = os.open(self.path, os.O_RDONLY)
        end = self._starts[i + 1] if i + 1 < len(self._starts) else self._size
        values = json.loads(os.pread(self._fd, end - self._starts[i], self._starts[i]))
        return SimpleNamespace(**dict(zip(COLUMNS, values)))

    def rows(self) -> Iterator[list]:
        """Every row's values (`COLUMNS`), in order."""
        self._fh.flush()
        with self.path.open("rb") as fh:
            for line in fh:
                yield json.loads(line)

    def delete(self) -> None:
        self._fh.close()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self.path.unlink(missing_ok=True)
