"""Grounded decoding on tokens: the rule of `scan` applied to what each token writes.

    constraint = GroundingConstraint(token_table(tokenizer), facts, max_new_tokens=96)
    token = constraint.choose_greedy(scores)     # the best-scoring token the rule allows
    constraint.advance(token)

A decoder asks for the best allowed token instead of masking the whole vocabulary: the
model's own choice passes almost always, so a step costs one scan of one token's text;
only when it is refused are the next candidates scanned, and past `CANDIDATES` the whole
vocabulary (cached per state). A token is allowed only when the text can still be settled
(no half-written number or name) in the tokens the request has left, so a length cut
cannot leave one either.
"""

from __future__ import annotations

from dataclasses import dataclass

from cvml.safety.grounding.facts import Facts
from cvml.safety.grounding.scan import START, State, distance, scan, settled

CANDIDATES = 64  # best-scoring tokens tried one by one before the whole vocabulary is scanned


@dataclass(frozen=True, eq=False)
class TokenTable:
    """The text each token id writes in context, and the ids that end a sequence."""

    pieces: tuple[str, ...]
    eos_ids: frozenset[int]


_TABLES: dict[int, tuple[object, TokenTable]] = {}


def token_table(tokenizer, eos_ids=None) -> TokenTable:
    """The tokenizer's token texts (computed once per tokenizer object).

    A token's text is read after an anchor token, so tokenizers that drop a word's leading
    space when it stands alone (SentencePiece) still give " word"."""
    key = id(tokenizer)
    if key in _TABLES and _TABLES[key][0] is tokenizer:
        return _TABLES[key][1]
    size = len(tokenizer)
    anchor = tokenizer.convert_tokens_to_ids(tokenizer.tokenize("a")[0]) if tokenizer.tokenize("a") else 0
    head = tokenizer.decode([anchor], skip_special_tokens=False, clean_up_tokenization_spaces=False)
    texts = tokenizer.batch_decode([[anchor, i] for i in range(size)], skip_special_tokens=False,
                                   clean_up_tokenization_spaces=False)
    pieces = tuple(t[len(head):] if t.startswith(head) else t for t in texts)
    eos = set(eos_ids or ())
    if tokenizer.eos_token_id is not None:
        eos.add(int(tokenizer.eos_token_id))
    table = TokenTable(pieces, frozenset(eos))
    _TABLES[key] = (tokenizer, table)
    return table


class GroundingConstraint:
    """One request's grounded decoding: its state, advanced token by token.

    Args:
        table: the tokenizer's `TokenTable`.
        facts: what the request's inputs hold (`grounding_facts`).
        max_new_tokens: the request's budget; the last token must settle the text.
    """

    def __init__(self, table: TokenTable, facts: Facts, max_new_tokens: int):
        self.table = table
        self.facts = facts
        self.max_new_tokens = max_new_tokens
        self.state: State = START
        self.steps = 0
        self.refused = 0  # candidates refused so far (a figure for the response and metrics)
        self._masks: dict[tuple[State, bool], list[bool]] = {}

    @property
    def left(self) -> int:
        """Tokens the request may still generate after the next one."""
        return max(0, self.max_new_tokens - self.steps - 1)

    @property
    def final(self) -> bool:
        return self.left == 0

    def allows(self, token: int) -> bool:
        """Whether generating `token` now keeps the text groundable in the tokens left."""
        return self._after(self.state, token, self.left) is not None

    def _after(self, state: State, token: int, left: int | None) -> State | None:
        if token in self.table.eos_ids:
            return state if settled(state, self.facts) else None
        if not 0 <= token < len(self.table.pieces):
            return None
        after = scan(state, self.table.pieces[token], self.facts)
        if after is None or (left is not None and distance(after, self.facts) > left):
            return None
        return after

    def advance(self, token: int) -> None:
        """Record the token generated; a token the rule refuses leaves the state as it was
        (a caller that forced it owns the consequence)."""
        after = self._after(self.state, token, None)
        if after is not None:
            self.state = after
        self.steps += 1

    def mask(self) -> list[bool]:
        """allowed[token] for the whole vocabulary, in the current state (cached)."""
        left = min(self.left, 64)  # no allowed number or name is longer: beyond it, the same mask
        key = (self.state, left)
        if key not in self._masks:
            self._masks[key] = [self._after(self.state, t, left) is not None for t in range(len(self.table.pieces))]
        return self._masks[key]

    def choose_greedy(self, scores) -> int:
        """The highest-scoring allowed token of a 1-d score tensor (-1 when none is)."""
        import torch

        k = min(CANDIDATES, scores.shape[-1])
        for token in torch.topk(scores, k).indices.tolist():
            if self.allows(token):
                return token
            self.refused += 1
        allowed = self._allowed(scores)
        if not bool(allowed.any()):
            return -1
        return int(scores.masked_fill(~allowed, float("-inf")).argmax())

    def masked(self, scores):
        """The scores with every refused token at -inf (for sampling from what is allowed)."""
        return scores.masked_fill(~self._allowed(scores), float("-inf"))

    def _allowed(self, scores):
        """The mask as a tensor as wide as the scores: a model's embedding matrix is often
        padded past the tokenizer, and those ids write nothing."""
        import torch

        mask = self.mask()
        allowed = torch.zeros(scores.shape[-1], dtype=torch.bool, device=scores.device)
        width = min(len(mask), scores.shape[-1])
        allowed[:width] = torch.tensor(mask[:width], dtype=torch.bool, device=scores.device)
        return allowed
