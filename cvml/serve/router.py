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
import random
from collections.abc import Sequence

from cvml.variants import Variant, check_variants

DEFAULT_EXPERIMENT = "default"
_BUCKET_BITS = 53  # a double holds 53 bits exactly, so bucket / 2**53 is always < 1


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
