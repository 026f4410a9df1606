"""Grounded decoding inside `model.generate`: a transformers `LogitsProcessor`.

Evaluation generates greedily with `model.generate` (bench, abtest, quantize); this
processor gives each row the best token its `GroundingConstraint` allows by sending every
better-scoring refused token to -inf, so greedy search picks exactly what cvml's engine
picks. It runs after generate's own processors (the repetition penalty), as the engine
applies the constraint after its penalties.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import LogitsProcessor

from cvml.safety.grounding.constraint import GroundingConstraint


class GroundingLogitsProcessor(LogitsProcessor):
    """Per-row constraints (None: that row is free) for one `generate` call.

    Args:
        constraints: one per batch row, in the batch's order.
        prompt_width: the padded prompt length: tokens past it are generated ones.
    """

    def __init__(self, constraints: Sequence[GroundingConstraint | None], prompt_width: int):
        self.constraints = list(constraints)
        self.prompt_width = prompt_width
        self._seen = 0

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        generated = input_ids.shape[1] - self.prompt_width
        for row, constraint in enumerate(self.constraints):
            if constraint is None:
                continue
            for token in input_ids[row, self.prompt_width + self._seen :].tolist():
                if token in constraint.table.eos_ids:  # finished: generate pads it from here on
                    self.constraints[row] = None
                    break
                constraint.advance(token)
        self._seen = generated
        for row, constraint in enumerate(self.constraints):
            if constraint is None:
                continue
            best = int(scores[row].argmax())
            if constraint.allows(best):
                continue
            chosen = constraint.choose_greedy(scores[row])
            if chosen >= 0:
                keep = scores[row, chosen].clone()
                scores[row] = float("-inf")
                scores[row, chosen] = keep
        return scores
