"""Grounded decoding: a rewrite can only state the numbers (and, strict, the names) its
inputs hold, by construction rather than by a check afterwards.

    facts = grounding_facts(source, job_description, mode="numbers")   # or "strict"
    constraint = GroundingConstraint(token_table(tokenizer), facts, max_new_tokens)

`facts` reads the inputs, `scan` holds the character-level rule, `constraint` applies it
to tokens for a decoder (cvml's engine), and `processor` to `model.generate`.
"""

from cvml.safety.grounding.constraint import GroundingConstraint, TokenTable, token_table
from cvml.safety.grounding.facts import MODES, Facts, grounding_facts
from cvml.safety.grounding.scan import grounded

__all__ = ["MODES", "Facts", "GroundingConstraint", "TokenTable", "grounded", "grounding_facts", "token_table"]
