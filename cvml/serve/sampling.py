"""Choosing the next token of every row of the running batch, each row with its own settings.

Rows are greedy (temperature 0) or sampled (temperature, top_p, a seeded
`torch.Generator` per request, so a seed gives the same text whatever else shares the
batch). The repetition penalty and end-of-sequence masking work as transformers'
`RepetitionPenaltyLogitsProcessor` and `MinNewTokensLengthLogitsProcessor` do, so a greedy
row returns exactly what `model.generate(do_sample=False)` returns for that request alone.
The per-row settings are kept as tensors that are rebuilt only when rows join or leave.

A row may carry a token constraint (grounded decoding, `cvml.safety.grounding`; a JSON
grammar, `cvml.serve.structured`): its token is one the constraint allows, applied after
the penalties as a logits processor would be. A grammar masks the row's scores before the
choice (`masks_first`); grounding checks the choice: a greedy row takes the best-scoring
allowed token, and a sampled row whose draw is refused draws again over the allowed tokens
alone (temperature and top-p taken over them).
"""

from __future__ import annotations

import torch

from cvml.serve.types import SamplingParams


class SamplingBatch:
    """Per-row sampling state, kept in the same row order as the batch's KV cache.

    Args:
        vocab_size: width of the logits.
        eos_ids: token ids that end a sequence (masked for rows with `ignore_eos`).
        default_penalty: repetition penalty of rows whose params leave it unset (the
            model's generation config).
        device: where the logits live.
    """

    def __init__(self, vocab_size: int, eos_ids: list[int], default_penalty: float, device):
        self.vocab_size = vocab_size
        self.device = torch.device(device)
        self.default_penalty = default_penalty
        self.eos_ids = torch.tensor(sorted(eos_ids), dtype=torch.long, device=self.device)
        self.params: list[SamplingParams] = []
        self.generators: list[torch.Generator | None] = []
        self.constraints: list = []
        # seen[i, t]: token t occurs in row i's prompt or output (for the repetition penalty).
        self.seen = torch.zeros((0, vocab_size), dtype=torch.bool, device=self.device)
        self._tensors: dict[str, torch.Tensor] | None = None

    @property
    def rows(self) -> int:
        return len(self.params)

    def add(self, params: SamplingParams, prompt_ids: list[int], constraint=None) -> None:
        """Append one row (`constraint`: its token constraint, or None)."""
        generator = None
        if params.temperature > 0:
            generator = torch.Generator(device=self.device)
            if params.seed is None:
                generator.seed()
            else:
                generator.manual_seed(params.seed)
        row = torch.zeros((1, self.vocab_size), dtype=torch.bool, device=self.device)
        row[0, torch.tensor(prompt_ids, dtype=torch.long, device=self.device)] = True
        self.seen = torch.cat([self.seen, row])
        self.params.append(params)
        self.generators.append(generator)
        self.constraints.append(constraint)
        self._tensors = None

    def extend(self, other: SamplingBatch) -> None:
        """Append the rows of `other` after ours."""
        self.params.extend(other.params)
        self.generators.extend(other.generators)
        self.constraints.extend(other.constraints)
        self.seen = torch.cat([self.seen, other.seen])
        self._tensors = None

    def keep(self, rows: list[int]) -> None:
        """Keep only `rows`, in that order."""
        self.params = [self.params[i] for i in rows]
        self.generators = [self.generators[i] for i in rows]
        self.constraints = [self.constraints[i] for i in rows]
        self.seen = self.seen[torch.tensor(rows, dtype=torch.long, device=self.device)]
        self._tensors = None

    def observe(self, tokens: torch.Tensor) -> None:
        """Record the token each row just produced."""
        self.seen[torch.arange(self.rows, device=self.device), tokens] = True
        for constraint, token in zip(self.constraints, tokens.tolist()):
            if constraint is not None:
                constraint.advance(token)

    def sample(self, logits: torch.Tensor, rows: list[int] | None = None) -> torch.Tensor:
        """Next token of each row.

        Args:
            logits: [n, vocab] scores of the last position, one row per selected row.
            rows: which rows the logits belong to (default: all, in order). The engine
                samples one row at a time after a batch failure, to find the culprit.

        Returns:
            [n] token ids.
        """
        t = self._state()
        if rows is not None:
            index = torch.tensor(rows, dtype=torch.long, device=self.device)
            t = {key: value.index_select(0, index) for key, value in t.items()}
            params = [self.params[i] for i in rows]
            generators = [self.generators[i] for i in rows]
            constraints = [self.constraints[i] for i in rows]
        else:
            params, generators, constraints = self.params, self.generators, self.constraints
        scores = logits.float()
        if bool(t["penalised"].any()):
            penalty = t["penalty"].unsqueeze(1)
            penalised = torch.where(scores < 0, scores * penalty, scores / penalty)
            scores = torch.where(t["seen"], penalised, scores)
        if bool(t["ignore_eos"].any()) and self.eos_ids.numel():
            eos_rows = t["ignore_eos"].nonzero().squeeze(1)
            scores[eos_rows.unsqueeze(1), self.eos_ids.unsqueeze(0)] = float("-inf")
        grammars = [(row, c) for row, c in enumerate(constraints) if getattr(c, "masks_first", False)]
        if grammars:  # a grammar's mask is computed every step anyway: applied before the choice
            from cvml.serve.structured import apply_masks

            apply_masks(scores, grammars)
        tokens = scores.argmax(dim=-1)
        sampled = [i for i, p in enumerate(params) if p.temperature > 0]
        if sampled:
            index = torch.tensor(sampled, dtype=torch.long, device=self.device)
            draws = torch.stack([torch.rand((), generator=generators[i], device=self.device) for i in sampled])
            tokens[index] = _sample_top_p(
                scores.index_select(0, index), t["temperature"][index], t["top_p"][index], draws
            )
        if any(c is not None for c in constraints):
            for row, (constraint, token) in enumerate(zip(constraints, tokens.tolist())):
                if constraint is not None and not constraint.allows(token):
                    tokens[row] = _constrained(constraint, scores[row], params[row], generators[row], t, row)
        return tokens

    def _state(self) -> dict[str, torch.Tensor]:
        if self._tensors is None:
            default = self.default_penalty
            penalty = [default if p.repetition_penalty is None else p.repetition_penalty for p in self.params]

            def tensor(values, dtype):
                return torch.tensor(values, dtype=dtype, device=self.device)

            self._tensors = {
                "temperature": tensor([p.temperature for p in self.params], torch.float32),
                "top_p": tensor([p.top_p for p in self.params], torch.float32),
                "penalty": tensor(penalty, torch.float32),
                "penalised": tensor([x != 1.0 for x in penalty], torch.bool),
                "ignore_eos": tensor([p.ignore_eos for p in self.params], torch.bool),
            }
        return {**self._tensors, "seen": self.seen}


def _constrained(constraint, scores: torch.Tensor, params: SamplingParams, generator, t: dict, row: int) -> int:
    """The token of a row whose first choice its constraint refused. When nothing is
    allowed the first choice stands (the caller's checks see the result)."""
    if params.temperature <= 0:
        chosen = constraint.choose_greedy(scores)
        return chosen if chosen >= 0 else int(scores.argmax())
    masked = constraint.masked(scores).unsqueeze(0)
    if not bool(torch.isfinite(masked).any()):
        return int(scores.argmax())
    draw = torch.rand((), generator=generator, device=scores.device).unsqueeze(0)
    return int(_sample_top_p(masked, t["temperature"][row : row + 1], t["top_p"][row : row + 1], draw)[0])


def _sample_top_p(scores: torch.Tensor, temperature: torch.Tensor, top_p: torch.Tensor, draws: torch.Tensor):
    """Inverse-CDF sampling from the nucleus of each row, with one uniform draw per row."""
    probs = torch.softmax(scores / temperature.unsqueeze(1), dim=-1)
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    cumulative = sorted_probs.cumsum(dim=-1)
    # Keep the smallest prefix whose mass reaches top_p (always at least the top token).
    outside = (cumulative - sorted_probs) >= top_p.unsqueeze(1)
    outside[:, 0] = False  # a top_p that rounds to 0 in float32 still keeps the top token
    sorted_probs = sorted_probs.masked_fill(outside, 0.0)
    cdf = sorted_probs.cumsum(dim=-1)
    target = (draws * cdf[:, -1]).unsqueeze(1)
    last_kept = (~outside).sum(dim=-1, keepdim=True) - 1
    picked = torch.minimum(torch.searchsorted(cdf, target, right=True), last_kept)
    return order.gather(1, picked).squeeze(1)
