"""Structured output: `response_format` enforced while decoding, with xgrammar.

    constraint = grammar_constraint(tokenizer, vocab_size, {"type": "json_schema", ...})
    # a token constraint for cvml's engine, like grounding's; `AllOf` runs both

xgrammar, not lm-format-enforcer: on this project's CPU measurements (the tiny model's
3,264-token vocabulary) a mask costs 0.027 ms a token with xgrammar and 0.048 ms with
lm-format-enforcer's pure-Python parser, which also grows with the vocabulary, and whose
transformers integration does not import under transformers 5. xgrammar compiles a schema
once (compiled grammars are cached by the compiler, one compiler per tokenizer) and fills
a bitmask per step in C++.

A strict `json_schema` is compiled as given; without `strict` the same (cvml always
enforces a schema it is given: a client that sends one wants it kept). `json_object` is any
JSON object. The whole output is the JSON: a stop token is allowed only once the value is
complete. xgrammar's JSON strings admit raw control characters (all but CR and LF), which
JSON forbids; compiled without free whitespace the output needs none, so tokens that write
one are masked too.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any

from cvml.serve.types import InvalidRequestError

_COMPILERS: dict[int, tuple[Any, Any]] = {}
_LOCK = threading.Lock()


def grammar_constraint(tokenizer, vocab_size: int, response_format: dict[str, Any], eos_ids=()) -> GrammarConstraint:
    """A token constraint that keeps the output valid for `response_format`.

    Raises:
        InvalidRequestError: a schema xgrammar cannot compile, or xgrammar is not installed.
    """
    compiler, controls = _compiler(tokenizer, vocab_size, eos_ids)
    kind = response_format["type"]
    try:
        if kind == "json_object":
            compiled = compiler.compile_builtin_json_grammar()
        else:
            schema = response_format["json_schema"]["schema"]
            compiled = compiler.compile_json_schema(json.dumps(schema, sort_keys=True), any_whitespace=False)
    except (RuntimeError, ValueError) as exc:
        raise InvalidRequestError(f"response_format: the JSON schema cannot be enforced: {exc}") from None
    return GrammarConstraint(compiled, vocab_size, controls)


@dataclass(frozen=True)
class RuntimeSchema:
    """`response_format` as a JSON schema for an engine whose runtime enforces it itself
    (OpenVINO GenAI's structured output) instead of taking cvml's per-token mask."""

    json_schema: str

    @classmethod
    def of(cls, response_format: dict[str, Any]) -> "RuntimeSchema":
        if response_format["type"] == "json_object":
            return cls(json.dumps({"type": "object"}))
        return cls(json.dumps(response_format["json_schema"]["schema"], sort_keys=True))


class GrammarConstraint:
    """One request's grammar state, advanced token by token (the engine's constraint
    contract: `allows`, `choose_greedy`, `masked`, `advance`, `refused`; and `apply`, since
    `masks_first`: the mask is needed every step anyway, so the engine applies it to the
    row's scores before choosing, and the choice is valid by construction)."""

    masks_first = True

    def __init__(self, compiled, vocab_size: int, forbidden=None):
        import xgrammar as xgr

        self._xgr = xgr
        self.matcher = xgr.GrammarMatcher(compiled)
        self.vocab_size = vocab_size
        self.forbidden = forbidden  # bool[vocab]: tokens no valid output holds (raw control characters)
        self.refused = 0
        self._bitmask = xgr.allocate_token_bitmask(1, vocab_size)
        self._mask = None  # bool[vocab] of the current step, filled when first needed
        self._applied = False  # this step's scores were masked by `apply`

    def _allowed(self):
        if self._mask is None:
            import torch

            self.matcher.fill_next_token_bitmask(self._bitmask)
            scores = torch.zeros((1, self.vocab_size))
            self._xgr.apply_token_bitmask_inplace(scores, self._bitmask)
            self._mask = torch.isfinite(scores[0])
            if self.forbidden is not None:
                self._mask &= ~self.forbidden
        return self._mask

    def apply(self, scores) -> None:
        """Mask one row's scores in place (a 1-d view into the batch's scores)."""
        apply_masks(scores.unsqueeze(0), [(0, self)])

    def fill(self, bitmask, index: int) -> None:
        """Write this step's mask into row `index` of a batch bitmask."""
        self.matcher.fill_next_token_bitmask(bitmask, index)
        self._applied = True

    def allows(self, token: int) -> bool:
        if self._applied:  # chosen from masked scores
            return 0 <= token < self.vocab_size
        return 0 <= token < self.vocab_size and bool(self._allowed()[token])

    def masked(self, scores):
        allowed = self._allowed().to(scores.device)
        width = min(allowed.shape[0], scores.shape[-1])
        out = scores.clone()
        out[:width] = out[:width].masked_fill(~allowed[:width], float("-inf"))
        out[width:] = float("-inf")
        return out

    def choose_greedy(self, scores) -> int:
        self.refused += 1
        masked = self.masked(scores)
        return int(masked.argmax()) if bool(masked.isfinite().any()) else -1

    def advance(self, token: int) -> None:
        if not self.matcher.is_terminated():
            self.matcher.accept_token(token)
        self._mask, self._applied = None, False


def apply_masks(scores, rows: list[tuple[int, GrammarConstraint]]) -> None:
    """Mask the grammar rows of a batch's scores in place, in one call for the batch: each
    matcher fills its row of one bitmask, xgrammar applies them together."""
    import torch
    import xgrammar as xgr

    bitmask = xgr.allocate_token_bitmask(scores.shape[0], scores.shape[-1])
    for row, constraint in rows:
        constraint.fill(bitmask, row)
    indices = [row for row, _ in rows]
    xgr.apply_token_bitmask_inplace(scores, bitmask, indices=indices)
    forbidden = [c.forbidden for _, c in rows if c.forbidden is not None]
    if forbidden:
        index = torch.tensor(indices, dtype=torch.long)
        scores[index] = scores[index].masked_fill(forbidden[0].unsqueeze(0), float("-inf"))


class AllOf:
    """Several constraints at once (grounding and a schema): a token must pass each."""

    def __init__(self, *constraints):
        self.constraints = [c for c in constraints if c is not None]

    @property
    def masks_first(self) -> bool:
        return any(getattr(c, "masks_first", False) for c in self.constraints)

    @property
    def grammar(self) -> GrammarConstraint | None:
        return next((c for c in self.constraints if getattr(c, "masks_first", False)), None)

    def apply(self, scores) -> None:
        self.grammar.apply(scores)

    def fill(self, bitmask, index: int) -> None:
        self.grammar.fill(bitmask, index)

    @property
    def forbidden(self):
        return self.grammar.forbidden

    @property
    def refused(self) -> int:
        return sum(c.refused for c in self.constraints)

    @refused.setter
    def refused(self, value: int) -> None:
        for c in self.constraints:
            c.refused = value

    def allows(self, token: int) -> bool:
        return all(c.allows(token) for c in self.constraints)

    def masked(self, scores):
        for c in self.constraints:
            scores = c.masked(scores)
        return scores

    def choose_greedy(self, scores) -> int:
        """The best token every constraint allows: the schema's mask first (cheap, exact),
        then the others' verdicts down the remaining candidates in score order."""
        import torch

        first, rest = self.constraints[0], self.constraints[1:]
        first.refused += 1
        scores = first.masked(scores)
        finite = int(torch.isfinite(scores).sum())
        for token in torch.topk(scores, min(finite, 256)).indices.tolist():
            if all(c.allows(token) for c in rest):
                return token
        for c in rest:
            scores = c.masked(scores)
        return int(scores.argmax()) if bool(torch.isfinite(scores).any()) else -1

    def advance(self, token: int) -> None:
        for c in self.constraints:
            c.advance(token)


def _compiler(tokenizer, vocab_size: int, eos_ids):
    try:
        import xgrammar as xgr
    except ImportError:
        raise InvalidRequestError(
            "response_format needs xgrammar, which this server lacks", hint="pip install 'cvml[structured]'"
        ) from None
    key = id(tokenizer)
    with _LOCK:
        held = _COMPILERS.get(key)
        if held is None or held[0] is not tokenizer:
            import torch

            from cvml.safety.grounding import token_table

            stops = sorted({int(i) for i in eos_ids} | ({tokenizer.eos_token_id} - {None}))
            info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size, stop_token_ids=stops)
            pieces = token_table(tokenizer, stops).pieces
            controls = torch.zeros(vocab_size, dtype=torch.bool)
            controls[: len(pieces)] = torch.tensor([any(c < " " for c in p) for p in pieces], dtype=torch.bool)
            controls[stops] = False
            held = (tokenizer, (xgr.GrammarCompiler(info), controls))
            _COMPILERS[key] = held
        return held[1]
