"""The words a model was fine-tuned on, stored with it, so that `cvml monitor` can tell how
much of production's text the model never saw (the out-of-vocabulary rate) without any
run-time download.

    vocab = Vocabulary.from_texts(r.source_text for r in records)
    vocab.write(model_dir)                  # model_dir/vocabulary.json
    Vocabulary.read(model_dir).oov_rate("Led a team of 5 nurses")

Words are runs of letters, lower-cased: numbers and PII placeholders (`<EMAIL_1>`) are
not vocabulary. The counts are kept (not just the set), so the training rows' own OOV
rate can be measured leaving their person out (`oov_rate(text, leave_out=counts)`, with
the word counts of every text of that person): a word only that person wrote is unknown
to the rest of the data, as a new user's would be. A word seen once is not stored at
all: it is unknown to the rest of the data either way, and rare words are where what
curation missed of a person would be.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from cvml.errors import DataError

FILE_NAME = "vocabulary.json"
SCHEMA = "cvml.vocabulary/1"
MAX_WORDS = 200_000  # the most frequent words are kept; rarer ones count as unknown
MIN_COUNT = 2  # words seen fewer times are not stored
_WORD = re.compile(r"[^\W\d_]+")
_PLACEHOLDER = re.compile(r"<[A-Z_]+_\d+>")


def words(text: str) -> list[str]:
    """The lower-cased letter runs of `text`, PII placeholders left out."""
    return _WORD.findall(_PLACEHOLDER.sub(" ", text).lower())


@dataclass(frozen=True)
class Vocabulary:
    """Word counts of a training corpus."""

    counts: dict[str, int]
    documents: int = 0

    @classmethod
    def from_texts(cls, texts: Iterable[str | None], max_words: int = MAX_WORDS) -> Vocabulary:
        counts: Counter[str] = Counter()
        documents = 0
        for text in texts:
            if text:
                counts.update(words(text))
                documents += 1
        kept = {word: n for word, n in counts.most_common(max_words) if n >= MIN_COUNT}
        return cls(kept, documents)

    def oov_rate(self, text: str, leave_out: Mapping[str, int] | None = None) -> float | None:
        """Share of the text's words the vocabulary lacks (None: no word at all).

        Args:
            leave_out: word counts of the corpus's own documents this text belongs with
                (its person's texts): a word is known only if the rest of the corpus holds it.
        """
        found = words(text)
        if not found:
            return None
        if leave_out is None:
            return sum(word not in self.counts for word in found) / len(found)
        return sum(self.counts.get(word, 0) - leave_out.get(word, 0) < 1 for word in found) / len(found)

    def write(self, folder: str | Path) -> Path:
        path = Path(folder) / FILE_NAME
        payload = {"schema": SCHEMA, "documents": self.documents, "words": len(self.counts), "counts": self.counts}
        path.write_text(json.dumps(payload, ensure_ascii=False, separators=(",", ":")) + "\n", encoding="utf-8")
        return path

    @classmethod
    def read(cls, folder: str | Path) -> Vocabulary:
        """The vocabulary stored in a model folder.

        Raises:
            DataError: the folder holds none (a model fine-tuned before cvml stored one,
                or not by cvml), or it is unreadable.
        """
        path = Path(folder) / FILE_NAME
        if not path.is_file():
            raise DataError(
                f"{Path(folder).name} has no {FILE_NAME}: the vocabulary is stored by `cvml finetune`",
                hint="fine-tune the model again with this cvml, or monitor it with a past window as reference",
            )
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
            return cls({str(k): int(v) for k, v in payload["counts"].items()}, int(payload.get("documents", 0)))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise DataError(f"cannot read {path.name} of {Path(folder).name}: {exc}") from None
