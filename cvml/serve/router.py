"""A/B routing: which variant (`a`, `b`, ...) serves a request, sticky per user.

    variants = parse_variants(["a=cv@prod", "b=cv@canary"], "90/10")
    router = Router(variants, experiment="rewrite-v4")
    router.assign("user-42").name        # the same answer on every call, in every process

A user is assigned to a variant *name*, never to a model version: `cvml models promote`
changes what `cv@canary` resolves to, not who is served by `b`. The bucket is the first
53 bits of sha256(experiment + user id), so assignments are the same across restarts and
machines (Python's `hash()` is salted per process), and renaming the experiment
reshuffles everyone, which is how a new experiment gets fresh groups. Variants take
consecutive slices of [0, 1) in the order given, so ramping the last one up (90/10 to
80/20) moves users only into it: nobody who already saw the canary is moved back.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

from cvml.errors import ConfigError

DEFAULT_EXPERIMENT = "default"
_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")
_SPEC_HINT = "give each variant as NAME=REF, e.g. --variant a=cv-rewriter@prod --variant b=cv-rewriter@canary"
# Weights are percentages; allow for decimal splits such as 33.3/33.3/33.4.
_SUM_TOLERANCE = 1e-6
_BUCKET_BITS = 53  # a double holds 53 bits exactly, so bucket / 2**53 is always < 1


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


class Router:
    """Assigns requests to variants: by user (sticky) or, without a user id, at random.

    Args:
        variants: the arms and their weights (checked with `check_variants`).
        experiment: the salt of the user hash; each experiment splits users afresh.
        rng: the source of randomness for requests without a user id (seed it in tests).

    Raises:
        ConfigError: the variants are not routable (see `check_variants`).
    """

    def __init__(
        self,
        variants: Sequence[Variant],
        experiment: str = DEFAULT_EXPERIMENT,
        rng: random.Random | None = None,
    ):
        check_variants(variants)
        self.variants = tuple(variants)
        self.experiment = experiment
        self._rng = rng or random.Random()
        # Upper edges of each variant's slice of [0, 1); a zero-weight variant has an empty slice.
        edges, total = [], 0.0
        for variant in self.variants:
            total += variant.weight
            edges.append(total / 100)
        self._edges = edges
        # Rounding may leave the last edge a hair under 1: the last variant with traffic takes the rest.
        self._last = max(i for i, v in enumerate(self.variants) if v.weight > 0)

    def assign(self, user_id: str | None, experiment: str | None = None) -> Variant:
        """The variant that serves `user_id`; random for None or "" (an anonymous request).

        Args:
            user_id: the caller's stable user id; the same id always gets the same variant
                for the same experiment and split.
            experiment: overrides the router's experiment as the hash salt.
        """
        if user_id:
            bucket = user_bucket(user_id, self.experiment if experiment is None else experiment)
        else:
            bucket = self._rng.random()
        # The first edge above the bucket; a zero-weight variant's edge equals its predecessor's.
        i = bisect.bisect_right(self._edges, bucket)
        return self.variants[i] if i < len(self.variants) else self.variants[self._last]


def user_bucket(user_id: str, experiment: str) -> float:
    """The user's position in [0, 1) for an experiment: uniform, stable, independent per experiment."""
    # The NUL separator keeps ("ab", "c") and ("a", "bc") apart.
    digest = hashlib.sha256(f"{experiment}\0{user_id}".encode()).digest()
    return (int.from_bytes(digest[:8], "big") >> (64 - _BUCKET_BITS)) / 2**_BUCKET_BITS


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
