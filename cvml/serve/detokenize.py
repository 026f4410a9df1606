"""Turning a growing list of token ids into text deltas that are safe to send.

Byte-level BPE pieces can end in the middle of a UTF-8 character, and decoding a token
alone may differ from decoding it in context. `IncrementalDetokenizer` holds text back
until it is complete: with a fast tokenizer through `tokenizers`' own `DecodeStream`
(in Rust, about a microsecond a token), otherwise by decoding a short window of recent
ids. `StopMatcher` holds back text that could be the start of a stop string, so a stop
string never reaches the client.
"""

from __future__ import annotations

from tokenizers.decoders import DecodeStream

REPLACEMENT = "\ufffd"


class IncrementalDetokenizer:
    """Text deltas of a sequence of generated ids; with `flush()`, their concatenation is
    the full decode. Special tokens (EOS) are not part of the text.

    Args:
        tokenizer: a transformers tokenizer.
    """

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self._sent = 0  # characters handed out so far
        self._backend = getattr(tokenizer, "backend_tokenizer", None)
        self._stream = DecodeStream(skip_special_tokens=True) if self._backend is not None else None
        # The window a slow tokenizer decodes: ids before _read_offset are already text, and
        # those from _prefix_offset give the next piece the context it decodes right in.
        self._prefix_offset = 0
        self._read_offset = 0
        self._prefix_text = ""

    def push(self, token_id: int) -> str:
        """Add one id; return the new text it completes ("" while a character is incomplete)."""
        self.ids.append(token_id)
        delta = (self._stream.step(self._backend, token_id) or "") if self._stream is not None else self._window()
        self._sent += len(delta)
        return delta

    def flush(self) -> str:
        """What is still held back at the end (an incomplete character decodes to U+FFFD)."""
        text = self._decode(self.ids)
        delta = text[self._sent :] if len(text) > self._sent else ""
        self._sent += len(delta)
        return delta

    def _window(self) -> str:
        text = self._decode(self.ids[self._prefix_offset :])
        if len(text) <= len(self._prefix_text) or text.endswith(REPLACEMENT):
            return ""
        delta = text[len(self._prefix_text) :]
        self._prefix_offset, self._read_offset = self._read_offset, len(self.ids)
        self._prefix_text = self._decode(self.ids[self._prefix_offset : self._read_offset])
        return delta

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)


class StopMatcher:
    """Cuts the text at the first stop string and holds back a possible partial match.

    Args:
        stops: stop strings (empty ones are ignored).
    """

    def __init__(self, stops):
        self.stops = tuple(s for s in stops if s)
        self._pending = ""

    def feed(self, delta: str) -> tuple[str, bool]:
        """Text that can be sent now, and whether a stop string was reached."""
        if not self.stops:
            return delta, False
        text = self._pending + delta
        hits = [i for i in (text.find(s) for s in self.stops) if i >= 0]
        if hits:
            self._pending = ""
            return text[: min(hits)], True
        partial = (k for s in self.stops for k in range(1, min(len(s), len(text) + 1)) if text.endswith(s[:k]))
        hold = max(partial, default=0)
        self._pending = text[len(text) - hold :] if hold else ""
        return text[: len(text) - hold], False

    def flush(self) -> str:
        """Held-back text, once the sequence has ended for another reason."""
        text, self._pending = self._pending, ""
        return text
