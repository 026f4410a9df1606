"""A/B routing: sticky per user, the split ratio within binomial noise, salts, parsing errors."""

from __future__ import annotations

import math
import os
import random
import subprocess
import sys

import pytest

from cvml.errors import ConfigError
from cvml.serve.router import Router, user_bucket
from cvml.variants import Variant, parse_variants

N_USERS = 20_000


def _users(n: int = N_USERS, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [f"user-{rng.getrandbits(64):016x}" for _ in range(n)]


def _tolerance(n: int, p: float, sigmas: float = 4.0) -> float:
    """4 standard deviations of a binomial count: a correct router fails this ~1 in 16,000 runs."""
    return sigmas * math.sqrt(n * p * (1 - p))


def _router(split: str = "90/10", experiment: str = "exp-1", **kwargs) -> Router:
    return Router(parse_variants(["a=cv@prod", "b=cv@canary"], split), experiment=experiment, **kwargs)


def test_parse_variants_reads_names_refs_and_weights():
    variants = parse_variants([" a = cv@prod ", "b=/models/run=3/final"], "33.3/66.7")
    assert variants == [Variant("a", "cv@prod", 33.3), Variant("b", "/models/run=3/final", 66.7)]
    assert parse_variants(["solo=cv@prod"], None) == [Variant("solo", "cv@prod", 100.0)]
    assert [v.weight for v in parse_variants(["a=x", "b=y"], "100/0")] == [100.0, 0.0]


@pytest.mark.parametrize(
    ("specs", "split", "message", "hint"),
    [
        ([], None, "no variant given", "--variant a="),
        (["cv@prod"], None, "'cv@prod' is not NAME=REF", "NAME=REF"),
        (["=cv@prod"], None, "is not NAME=REF", "NAME=REF"),
        (["a="], None, "is not NAME=REF", "NAME=REF"),
        (["1a=cv"], None, "invalid variant name '1a'", "a letter followed by"),
        (["a=x", "a=y"], "50/50", "variant 'a' is given twice", "distinct"),
        (["a=x", "b=y"], None, "2 variants need a traffic split", "--split 50/50"),
        (["a=x", "b=y", "c=z"], None, "3 variants need a traffic split", "--split 33/33/34"),
        (["a=x", "b=y"], "100", "has 1 weight(s) but 2 variant(s)", "one percentage per --variant"),
        (["a=x"], "50/50", "has 2 weight(s) but 1 variant(s)", "one percentage per --variant"),
        (["a=x", "b=y"], "90/ten", "is not a list of percentages", "'/'"),
        (["a=x", "b=y"], "90:10", "is not a list of percentages", "'/'"),
        (["a=x", "b=y"], "", "is not a list of percentages", "'/'"),
        (["a=x", "b=y"], "90/20", "the split sums to 110, not 100", "add up to 100"),
        (["a=x", "b=y"], "110/-10", "variant 'b' has weight -10", "between 0 and 100"),
        (["a=x", "b=y"], "nan/100", "variant 'a' has weight nan", "between 0 and 100"),
    ],
)
def test_parse_variants_rejects_malformed_input(specs, split, message, hint):
    with pytest.raises(ConfigError) as info:
        parse_variants(specs, split)
    assert message in info.value.message
    assert hint in info.value.hint
    assert info.value.exit_code == 2


def test_router_checks_variants_it_is_built_from():
    with pytest.raises(ConfigError, match="sums to 90"):
        Router([Variant("a", "x", 50), Variant("b", "y", 40)])
    with pytest.raises(ConfigError, match="no variant"):
        Router([])


def test_assignment_is_sticky_across_calls_and_instances():
    users = _users(2_000)
    first = [_router().assign(u).name for u in users]
    assert [_router().assign(u).name for u in users] == first
    router = _router()
    assert [router.assign(u).name for u in users] == [router.assign(u).name for u in users] == first
    assert set(first) == {"a", "b"}


def test_assignment_is_the_same_in_another_process():
    """Python's hash() differs per process; the router must not."""
    users = _users(200)
    code = (
        "import sys; from cvml.serve.router import Router; from cvml.variants import parse_variants\n"
        "r = Router(parse_variants(['a=cv@prod', 'b=cv@canary'], '90/10'), experiment='exp-1')\n"
        "print(''.join(r.assign(u).name for u in sys.argv[1:]))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    other = subprocess.run([sys.executable, "-c", code, *users], capture_output=True, text=True, env=env, check=True)
    router = _router()
    assert other.stdout.strip() == "".join(router.assign(u).name for u in users)


def test_bucket_function_is_pinned():
    """Changing the hash would silently move every live user to another variant."""
    # The first 53 bits of sha256(b"exp-1\x00user-1") over 2**53, computed outside cvml.
    assert user_bucket("user-1", "exp-1") == 0.7847342603047023
    assert 0 <= user_bucket("", "") < 1


@pytest.mark.parametrize("split", ["90/10", "50/50", "75/25"])
def test_split_ratio_is_within_binomial_noise(split):
    share_b = float(split.split("/")[1]) / 100
    router = _router(split)
    count_b = sum(router.assign(u).name == "b" for u in _users())
    expected = N_USERS * share_b
    assert abs(count_b - expected) <= _tolerance(N_USERS, share_b), (count_b, expected)


def test_three_way_split_is_within_binomial_noise():
    router = Router(parse_variants(["a=x", "b=y", "c=z"], "20/30/50"), experiment="three")
    names = [router.assign(u).name for u in _users()]
    for name, share in (("a", 0.2), ("b", 0.3), ("c", 0.5)):
        assert abs(names.count(name) - N_USERS * share) <= _tolerance(N_USERS, share), name


def test_anonymous_requests_are_random_with_the_split_and_seedable():
    router = _router(rng=random.Random(7))
    names = [router.assign(None).name for _ in range(N_USERS)]
    assert abs(names.count("b") - N_USERS * 0.1) <= _tolerance(N_USERS, 0.1)
    again = _router(rng=random.Random(7))
    assert [again.assign("").name for _ in range(N_USERS)] == names  # "" is anonymous too


def test_a_new_experiment_salt_reshuffles_users():
    users = _users()
    router = _router("50/50", "exp-1")
    first = [router.assign(u).name for u in users]
    second = [router.assign(u, experiment="exp-2").name for u in users]
    # Independent halves: each user changes variant with probability 1/2.
    moved = sum(a != b for a, b in zip(first, second))
    assert abs(moved - N_USERS / 2) <= _tolerance(N_USERS, 0.5)
    exp2 = _router("50/50", "exp-2")
    assert [exp2.assign(u).name for u in users] == second


def test_b_users_of_one_experiment_spread_over_the_next():
    """Being in b once says nothing about the next experiment (no user is always the canary)."""
    exp1, exp2 = _router(experiment="exp-1"), _router(experiment="exp-2")
    in_b = [u for u in _users() if exp1.assign(u).name == "b"]
    again = sum(exp2.assign(u).name == "b" for u in in_b)
    assert abs(again - len(in_b) * 0.1) <= _tolerance(len(in_b), 0.1)


def test_ramping_the_canary_up_only_moves_users_into_it():
    users = _users(5_000)
    before, after = _router("90/10"), _router("80/20")
    moves = {(before.assign(u).name, after.assign(u).name) for u in users}
    assert moves == {("a", "a"), ("a", "b"), ("b", "b")}


@pytest.mark.parametrize(("split", "only"), [("100/0", "a"), ("0/100", "b")])
def test_a_zero_weight_variant_never_serves(split, only):
    router = _router(split, rng=random.Random(0))
    assert {router.assign(u).name for u in _users(5_000)} == {only}
    assert {router.assign(None).name for _ in range(5_000)} == {only}


def test_single_variant_serves_everyone():
    router = Router(parse_variants(["default=cv@prod"], None))
    assert {router.assign(u).ref for u in _users(1_000)} == {"cv@prod"}


def test_a_version_swap_keeps_every_assignment():
    """Promote/rollback changes what b's ref resolves to (or the ref itself), never who gets b."""
    users = _users(5_000)
    before = Router([Variant("a", "cv@3", 90), Variant("b", "cv@4", 10)], experiment="exp-1")
    after = Router([Variant("a", "cv@3", 90), Variant("b", "/models/cv-v5", 10)], experiment="exp-1")
    served = [after.assign(u) for u in users]
    assert [v.name for v in served] == [before.assign(u).name for u in users]
    assert {v.ref for v in served if v.name == "b"} == {"/models/cv-v5"}
