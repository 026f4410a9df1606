"""A/B variants as people write them — `--variant a=cv@prod --variant b=cv@canary --split
90/10`, a recipe's serve.variants, an experiment in the registry — parsed and checked once.

Routing requests to them is serve's (`cvml.serve.router`); recording an experiment's
variants is the registry's (`cvml.registry.experiments`): both read them here.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from cvml.errors import ConfigError

_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")
_SPEC_HINT = "give each variant as NAME=REF, e.g. --variant a=cv-rewriter@prod --variant b=cv-rewriter@canary"
# Weights are percentages; allow for decimal splits such as 33.3/33.3/33.4.
_SUM_TOLERANCE = 1e-6


@dataclass(frozen=True)
class Variant:
    """One arm of an experiment.

    Attributes:
        name: what users are assigned to and what the request log records (`a`, `b`, ...).
        ref: the model it serves: a registry reference (`cv@prod`) or a model path,
            resolved by the server, so a promotion swaps the version under the same name.
        weight: its share of traffic in percent (all weights of a router sum to 100).
    """

    name: str
    ref: str
    weight: float = 100.0


def parse_variants(specs: Sequence[str], split: str | None) -> list[Variant]:
    """Parse `--variant NAME=REF` (repeated) and `--split 90/10` into variants.

    A single variant needs no split (it gets 100); two or more need one weight each,
    in the order the variants were given.

    Raises:
        ConfigError: a spec is not NAME=REF, a name repeats, the split is malformed, has
            a different number of weights than variants, or does not sum to 100.
    """
    if not specs:
        raise ConfigError("no variant given", hint=_SPEC_HINT)
    pairs = [_parse_spec(spec) for spec in specs]
    if split is None:
        if len(pairs) > 1:
            n = len(pairs)
            even = "/".join([str(100 // n)] * (n - 1) + [str(100 - 100 // n * (n - 1))])
            raise ConfigError(
                f"{len(pairs)} variants need a traffic split",
                hint=f"add --split with one percentage per variant, e.g. --split {even}",
            )
        weights = [100.0]
    else:
        weights = _parse_split(split)
        if len(weights) != len(pairs):
            raise ConfigError(
                f"--split {split} has {len(weights)} weight(s) but {len(pairs)} variant(s) were given",
                hint="give one percentage per --variant, in the same order",
            )
    variants = [Variant(name, ref, weight) for (name, ref), weight in zip(pairs, weights)]
    check_variants(variants)
    return variants


def check_variants(variants: Sequence[Variant]) -> None:
    """Check that variants can be routed: at least one, unique valid names, weights summing to 100.

    Raises:
        ConfigError: naming what is wrong.
    """
    if not variants:
        raise ConfigError("no variant given", hint=_SPEC_HINT)
    seen: set[str] = set()
    for variant in variants:
        if not _NAME_RE.fullmatch(variant.name):
            raise ConfigError(
                f"invalid variant name {variant.name!r}",
                hint="use a letter followed by letters, digits, '_' or '-' (e.g. a, b, control)",
            )
        if variant.name in seen:
            raise ConfigError(f"variant {variant.name!r} is given twice", hint="give each variant a distinct name")
        seen.add(variant.name)
        if not variant.ref:
            raise ConfigError(f"variant {variant.name!r} has no model", hint=_SPEC_HINT)
        if not math.isfinite(variant.weight) or variant.weight < 0:
            raise ConfigError(
                f"variant {variant.name!r} has weight {variant.weight!r}",
                hint="weights are percentages between 0 and 100",
            )
    total = sum(v.weight for v in variants)
    if abs(total - 100) > _SUM_TOLERANCE:
        raise ConfigError(
            f"the split sums to {total:g}, not 100",
            hint="give percentages that add up to 100, e.g. --split 90/10",
        )


def _parse_spec(spec: str) -> tuple[str, str]:
    name, sep, ref = spec.partition("=")
    name, ref = name.strip(), ref.strip()
    if not sep or not name or not ref:
        raise ConfigError(f"--variant {spec!r} is not NAME=REF", hint=_SPEC_HINT)
    return name, ref


def _parse_split(split: str) -> list[float]:
    parts = split.split("/")
    weights = []
    for part in parts:
        try:
            weights.append(float(part.strip()))
        except ValueError:
            raise ConfigError(
                f"--split {split!r} is not a list of percentages",
                hint="separate one percentage per variant with '/', e.g. --split 90/10",
            ) from None
    return weights
