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

from collections import defaultdict
from dataclasses import dataclass
from functools import cached_property

from cvml.safety.grounding.facts import Facts
from cvml.safety.grounding.scan import START, State, close_number, distance, scan, settled

CANDIDATES = 256  # best-scoring tokens tried one by one before the whole vocabulary is scanned


@dataclass(frozen=True, eq=False)
class TokenTable:
    """The text each token id writes in context, and the ids that end a sequence."""

    pieces: tuple[str, ...]
    eos_ids: frozenset[int]

    @cached_property
    def number_continuations(self) -> list[int]:
        """Tokens whose text starts with a digit or a separator: all that can go on with
        an unfinished number."""
        return [t for t, p in enumerate(self.pieces) if p[:1].isdecimal() or p[:1] in (".", ",")]

    @cached_property
    def number_starts(self) -> list[tuple[int, int]]:
        """(token, where its digits start) of the tokens that open with a number (" 26",
        "2019", "5%"): the ones a model reaches for when it wants to state a figure."""
        return [(t, len(p) - len(p.lstrip(" \t"))) for t, p in enumerate(self.pieces) if p.lstrip(" \t")[:1].isdecimal()]

    @cached_property
    def by_first_letter(self) -> dict[str, list[int]]:
        """Tokens whose text starts with a letter, by that letter in lower case: all that
        can go on with an unfinished word."""
        found = defaultdict(list)
        for t, p in enumerate(self.pieces):
            if p[:1].isalpha():
                found[p[0].lower()].append(t)
        return dict(found)


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
        self.refused = 0  # steps whose best-scoring token was refused (a figure for metrics)
        self._masks: dict[tuple[State, int], list[bool]] = {}
        self._bad_numbers = None
        self._last: tuple = (None, None, None)

    @property
    def left(self) -> int:
        """Tokens the request may still generate after the next one."""
        return max(0, self.max_new_tokens - self.steps - 1)

    @property
    def final(self) -> bool:
        return self.left == 0

    def allows(self, token: int) -> bool:
        """Whether generating `token` now keeps the text groundable in the tokens left."""
        after = self._after(self.state, token, self.left)
        self._last = (self.state, token, after)  # advance() usually follows with this token
        return after is not None

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
        state, checked, after = self._last
        if state is not self.state or checked != token or after is None:
            after = self._after(self.state, token, None)
        if after is not None:
            self.state = after
        self.steps += 1

    def mask(self) -> list[bool]:
        """allowed[token] for the whole vocabulary, in the current state (cached).

        In an unfinished number or locked name only the tokens that can go on with it are
        read; every other token would end it unfinished."""
        left = min(self.left, 64)  # no allowed number or name is longer: beyond it, the same mask
        key = (self.state, left)
        if key not in self._masks:
            state, size = self.state, len(self.table.pieces)
            if state.num and close_number(state, self.facts) is None:
                candidates = self.table.number_continuations
            elif state.in_word and state.locked and state.word not in self.facts.cap_words:
                letters = {w[len(state.word)] for w in self.facts.cap_words
                           if len(w) > len(state.word) and w.startswith(state.word)}
                candidates = [t for c in letters for t in self.table.by_first_letter.get(c, ())]
            else:
                candidates = range(size)
            allowed = [False] * size
            for t in candidates:
                allowed[t] = self._after(state, t, left) is not None
            self._masks[key] = allowed
        return self._masks[key]

    def choose_greedy(self, scores) -> int:
        """The highest-scoring allowed token of a 1-d score tensor (-1 when none is). The
        caller asks once the model's own choice was refused (`allows`)."""
        import torch

        self.refused += 1
        if not self.state.num and not self.state.cur:
            scores = scores.masked_fill(self._unwritable_numbers(scores), float("-inf"))
        k = min(CANDIDATES, scores.shape[-1])
        for token in torch.topk(scores, k).indices.tolist():
            if self.allows(token):
                return token
        allowed = self._allowed(scores)
        if not bool(allowed.any()):
            return -1
        return int(scores.masked_fill(~allowed, float("-inf")).argmax())

    def _unwritable_numbers(self, scores):
        """The tokens that open with a number no input allows (read once per request): out
        of the running wherever a number may start, so a model that wants to state a
        figure does not send the decoder through all of them one by one."""
        import torch

        if self._bad_numbers is None:
            fresh = State(opens=False)
            bad = [t for t, at in self.table.number_starts
                   if scan(fresh, self.table.pieces[t][at:], self.facts) is None]
            self._bad_numbers = torch.zeros(scores.shape[-1], dtype=torch.bool, device=scores.device)
            self._bad_numbers[torch.tensor(bad, dtype=torch.long)] = True
        return self._bad_numbers

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
