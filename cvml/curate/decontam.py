"""Decontamination: drop training rows that overlap an eval/test set.

A model that trained on an eval row's text scores well on it for the wrong reason, and
the bench numbers stop meaning anything. Texts are compared as word n-grams (default
n = 8, lowercased, punctuation ignored). A training text is contaminated when at least
`min_overlap` (default half) of its n-grams occur in the eval set's sources and
targets: it copies an eval text. CV text is formulaic, so a single shared 8-gram is
usually a stock phrase ("patients per shift in the emergency department using"): on
4,000 synthetic people split by group, "any shared 8-gram" flags 44% of the training
rows against the test split, "half of them" 11% (near copies of other people's rows),
and both catch every nudged copy of a test row. `min_overlap=0` restores the any-shared-n-gram rule. An eval text shorter
than n words counts as a whole, so a training text equal to it is caught as well.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable

from cvml.errors import DataError

_WORD = re.compile(r"\w+")


class Decontaminator:
    """Hashed n-grams of the eval texts, and the check of a training text against them.
    Python's hash() is fine here: the set is built and queried in one process.

    Args:
        eval_texts: the eval set's texts (see `load_eval_texts`).
        n: n-gram length in words.
        min_overlap: share of a text's n-grams found in the eval set from which the text
            is contaminated; 0 means any shared n-gram.
    """

    def __init__(self, eval_texts: Iterable[str], n: int = 8, min_overlap: float = 0.5):
        if n < 1 or not 0 <= min_overlap <= 1:
            raise ValueError(f"need n >= 1 and 0 <= min_overlap <= 1, got n={n}, min_overlap={min_overlap}")
        self.n = n
        self.min_overlap = min_overlap
        self._grams: set[int] = set()
        self._short: set[int] = set()  # whole eval texts shorter than n words
        for text in eval_texts:
            tokens = _tokens(text)
            if len(tokens) >= n:
                self._grams.update(hash(gram) for gram in self._ngrams(tokens))
            elif tokens:
                self._short.add(hash(tuple(tokens)))

    def __len__(self) -> int:
        return len(self._grams) + len(self._short)

    def check(self, text: str) -> str | None:
        """Why `text` overlaps the eval set, or None when it does not."""
        tokens = _tokens(text)
        if len(tokens) < self.n:
            if tokens and hash(tuple(tokens)) in self._short:
                return f"repeats the eval text {' '.join(tokens)!r}"
            return None
        grams = self._ngrams(tokens)
        shared = [gram for gram in grams if hash(gram) in self._grams]
        if shared and len(shared) >= self.min_overlap * len(grams):
            return (f"shares {len(shared)} of {len(grams)} {self.n}-grams with the eval set, "
                    f"e.g. {' '.join(shared[0])!r}")
        return None

    def _ngrams(self, tokens: list[str]) -> list[tuple[str, ...]]:
        n = self.n
        return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]

    @staticmethod
    def load_eval_texts(path: str | Path) -> list[str]:
        """The source_text and target strings of an eval set: a .jsonl/.parquet file, or a
        dataset folder (its test split). Rows need not pass the record schema — any row
        with a string source_text or target contributes it.

        Raises:
            DataError: the file is missing or unreadable, a JSONL line is not JSON, or no
                row holds a text.
        """
        from cvml.data.records import iter_rows, resolve_data_file

        file = resolve_data_file(path, split="test")
        texts = []
        for line, row in iter_rows(file):
            if not isinstance(row, dict):
                raise DataError(f"eval set {file} line {line} is not a record: {str(row)[:80]}",
                                hint="Fix or remove the line: checking against part of an eval set is not safe.")
            texts.extend(row[key] for key in ("source_text", "target") if isinstance(row.get(key), str))
        if not texts:
            raise DataError(f"eval set {file} has no source_text or target strings")
        return texts


def _tokens(text: str) -> list[str]:
    return _WORD.findall(text.lower())
