"""Grounded decoding: the character rule, the token constraint on a real BPE tokenizer,
and (integration) the engine and `model.generate` decoding the same grounded text."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cvml.safety.fabrication import check_fabrication
from cvml.safety.grounding import GroundingConstraint, grounded, grounding_facts, token_table
from cvml.safety.grounding.processor import GroundingLogitsProcessor

SOURCE = "Cut API latency by 25% for 1,200 users in 2019 at Acme Corp with five engineers."
JD = "We need Python and 3+ years of Kubernetes."


@pytest.mark.parametrize(
    ("text", "numbers", "strict"),
    [
        ("Cut latency by 25% for 1200 users.", True, True),
        ("Reduced latency by 30%.", False, False),
        ("saving twelve hours a week", False, False),
        ("Saved 12 hours", False, False),
        ("Led five engineers at Acme Corp using Python.", True, True),
        ("Led 5 engineers", True, True),  # "five" -> 5
        ("Led 5 engineers over 3 years", False, False),  # the JD's "3+ years" is a requirement
        ("Led a team at Google.", True, False),  # a name the inputs lack, mid-sentence
        ("Google: led a team.", True, True),  # a sentence's first word is free
        ("in 2019. Improved API latency", True, True),
        ("holds an MBA", True, False),
        ("holds a bachelor degree", True, False),  # degree words the inputs lack
        ("Grew 1,200 to 2019", True, True),
        ("v1.2 of the API", False, False),
        ("one of the first", True, True),  # "one" is a word, not a claim
        ("twitter ads", True, True),  # "tw" may go on to a word that is no number
        ("- Led Acme Corp\n- Python", True, True),
    ],
)
def test_rule_on_whole_texts(text, numbers, strict):
    assert grounded(text, grounding_facts(SOURCE, JD, "numbers")) is numbers
    assert grounded(text, grounding_facts(SOURCE, JD, "strict")) is strict


def test_off_allows_everything_and_modes_are_checked():
    assert grounded("Saved 12 hours at Google with an MBA", grounding_facts(SOURCE, JD, "off"))
    with pytest.raises(ValueError, match="one of off, numbers, strict"):
        grounding_facts(SOURCE, JD, "loose")


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("15 years of experience", True),
        ("lifted CTR by 15%", False),  # the inputs' 15 is a duration, not a percentage
        ("saving 15 hours", False),
        ("saving 5 hours a week", True),
        ("by 51 percent", True),
        ("51% faster", True),
        ("fifteen percent", False),
        ("15 engineers in 15 countries", True),  # a plain number is no new fact about its unit
        ("$51", False),
        ("a $2M budget", True),
        ("a $2 million budget", True),
        ("$3 million", False),
        ("a million users", False),
        ("saving 2,018s", False),  # read as the number 2
        ("in 2,019", False),  # a year is not grouped
    ],
)
def test_a_number_keeps_the_unit_the_inputs_give_it(text, ok):
    source = "Experience: 15 years | saving 5 hours a week | click-through up 51% | budget $2M | 2018-2019"
    facts = grounding_facts(source, None, "numbers")
    assert grounded(text, facts) is ok
    if ok:
        assert not check_fabrication(text, source).flagged


def test_thousands_separators_and_number_words_are_one_number():
    facts = grounding_facts("Managed a budget of 1500000 and twelve people", None, "numbers")
    assert grounded("a 1,500,000 budget for 12 people", facts)
    assert not grounded("a 1,500 budget", facts)


@pytest.fixture(scope="module")
def tokenizer():
    """A byte-level BPE trained here on CV-like text (digits merge into multi-digit tokens)."""
    from cvml.tiny.model import train_tokenizer
    from cvml.tiny.synth import generate_records

    texts = [str(r.get("source_text")) + " " + str(r.get("target")) for r in generate_records(300, seed=1)]
    return train_tokenizer(texts, vocab_size=1200)


def test_token_table_reads_each_token_in_context(tokenizer):
    table = token_table(tokenizer)
    assert len(table.pieces) == len(tokenizer)
    ids = tokenizer("Reduced costs by 25% in 2019", add_special_tokens=False)["input_ids"]
    assert "".join(table.pieces[i] for i in ids) == "Reduced costs by 25% in 2019"
    assert table.eos_ids == {tokenizer.eos_token_id}


def _decode_with(constraint, scores_for_step, steps):
    ids = []
    for k in range(steps):
        token = constraint.choose_greedy(scores_for_step(k))
        if token < 0:
            break
        ids.append(token)
        constraint.advance(token)
        if token in constraint.table.eos_ids:
            break
    return ids


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), mode=st.sampled_from(["numbers", "strict"]), steps=st.integers(1, 40))
def test_any_scores_decode_to_a_grounded_text(tokenizer, seed, mode, steps):
    """Whatever the model scores, the constrained text keeps the rule, cut by length or not:
    no number its inputs lack, no half-written one at the end."""
    table = token_table(tokenizer)
    facts = grounding_facts(SOURCE, JD, mode)
    generator = torch.Generator().manual_seed(seed)
    # Scores that favour digit tokens, so numbers are attempted often.
    digits = torch.tensor([any(c.isdigit() for c in p) for p in table.pieces], dtype=torch.float32)
    constraint = GroundingConstraint(table, facts, max_new_tokens=steps)
    ids = _decode_with(constraint, lambda k: torch.randn(len(table.pieces), generator=generator) + 3 * digits, steps)
    text = "".join(table.pieces[i] for i in ids if i not in table.eos_ids)
    assert grounded(text, facts), text
    quantities = ("number", "percent", "money", "year", "duration")
    unsupported = [c for c in check_fabrication(text, SOURCE, JD).claims if c.kind in quantities]
    assert unsupported == [], (text, unsupported)


def test_greedy_choice_is_the_best_allowed_token(tokenizer):
    table = token_table(tokenizer)
    constraint = GroundingConstraint(table, grounding_facts(SOURCE, JD, "numbers"), max_new_tokens=20)
    for token in tokenizer(" saved", add_special_tokens=False)["input_ids"]:
        constraint.advance(token)
    scores = torch.randn(len(table.pieces), generator=torch.Generator().manual_seed(0))
    banned = tokenizer.convert_tokens_to_ids("Ġ25")
    scores[banned] = 100.0  # the model wants " 25": the source holds 25%, so it stays
    assert constraint.choose_greedy(scores) == banned
    facts = grounding_facts("Cut costs", None, "numbers")  # no number at all in the inputs
    constraint = GroundingConstraint(table, facts, max_new_tokens=20)
    choice = constraint.choose_greedy(scores)
    allowed = torch.tensor(constraint.mask())
    assert choice == int(scores.masked_fill(~allowed, float("-inf")).argmax())
    assert not any(c.isdigit() for c in table.pieces[choice])
    assert constraint.refused >= 1


def test_a_number_starts_only_when_the_tokens_left_can_finish_it(tokenizer):
    table = token_table(tokenizer)
    facts = grounding_facts("Served 1,200 users", None, "numbers")
    one = tokenizer.convert_tokens_to_ids("Ġ1")
    assert not GroundingConstraint(table, facts, max_new_tokens=2).allows(one)  # ",200" needs 4 more
    constraint = GroundingConstraint(table, facts, max_new_tokens=5)
    assert constraint.allows(one)
    constraint.advance(one)
    assert not constraint.allows(tokenizer.eos_token_id)  # ending at "1" would state 1
    assert not constraint.allows(tokenizer(" users", add_special_tokens=False)["input_ids"][0])


def test_logits_processor_follows_each_rows_constraint(tokenizer):
    table = token_table(tokenizer)
    rows = [GroundingConstraint(table, grounding_facts("no numbers here", None, "numbers"), 5), None]
    processor = GroundingLogitsProcessor(rows, prompt_width=3)
    scores = torch.zeros((2, len(table.pieces)))
    digit = tokenizer.convert_tokens_to_ids("Ġ5")
    scores[:, digit] = 10.0
    out = processor(torch.zeros((2, 3), dtype=torch.long), scores.clone())
    assert int(out[0].argmax()) != digit and not any(c.isdigit() for c in table.pieces[int(out[0].argmax())])
    assert int(out[1].argmax()) == digit  # the free row is untouched


def test_engine_and_generate_decode_the_same_grounded_text(loaded):
    """cvml's engine (serve) and `model.generate` with the processor (bench, abtest) pick the
    same token at every step, and both outputs keep the rule."""
    from types import SimpleNamespace

    from cvml.evaluation.generation import generate_outputs
    from cvml.prompts import render_prompt
    from cvml.serve.engine import Engine
    from cvml.serve.types import GenerationRequest, SamplingParams

    items = [
        SimpleNamespace(task="rewrite_bullet", source_text="Cut API latency by 25% for 1,200 users", job_description=None),
        SimpleNamespace(task="rewrite_bullet", source_text="Trained 12 nurses in wound care", job_description=None),
        SimpleNamespace(task="tailor_section", source_text="Built dashboards in Tableau for 3 teams",
                        job_description="Analyst with SQL and 5 years of experience"),
    ]
    for mode in ("numbers", "strict"):
        expected = generate_outputs(loaded, items, max_new_tokens=24, grounding=mode)
        engine = Engine(loaded, max_batch_size=4, batch_wait_ms=20)
        engine.start()
        try:
            table = token_table(loaded.tokenizer, engine.eos_ids)
            handles = []
            for it in items:
                prompt = render_prompt(loaded.tokenizer, it.task, it.source_text, it.job_description)
                ids = loaded.tokenizer(prompt, add_special_tokens=False)["input_ids"]
                facts = grounding_facts(it.source_text, it.job_description, mode)
                handles.append(engine.submit(GenerationRequest(
                    ids, SamplingParams(max_new_tokens=24), constraint=GroundingConstraint(table, facts, 24))))
            got = [h.result(timeout=120).text.strip() for h in handles]
        finally:
            engine.stop()
        assert got == expected
        for it, text in zip(items, got):
            assert grounded(text, grounding_facts(it.source_text, it.job_description, mode)), text


def test_scores_wider_than_the_tokenizer(tokenizer):
    """Models pad their vocabulary past the tokenizer: those ids are never chosen."""
    table = token_table(tokenizer)
    constraint = GroundingConstraint(table, grounding_facts("no numbers", None, "numbers"), 8)
    scores = torch.zeros(len(table.pieces) + 28)
    scores[-1] = 50.0
    scores[tokenizer.convert_tokens_to_ids("Ġ5")] = 40.0
    choice = constraint.choose_greedy(scores)
    assert choice < len(table.pieces) and not any(c.isdigit() for c in table.pieces[choice])
    assert torch.isinf(constraint.masked(scores)[-1])


@pytest.mark.parametrize("prefix", ["Saved 1", "Saved 1,2", "Led Ac", "Led Acme Co", "in 20", "by 2", "using P", "Led"])
@pytest.mark.parametrize("mode", ["numbers", "strict"])
def test_the_shortcut_mask_is_the_whole_vocabulary_read(tokenizer, prefix, mode):
    """The mask reads only the tokens that can go on with an unfinished number or name:
    the same verdicts as reading every token."""
    table = token_table(tokenizer)
    constraint = GroundingConstraint(table, grounding_facts(SOURCE, JD, mode), max_new_tokens=30)
    from cvml.safety.grounding.scan import START, scan

    state = scan(START, prefix, constraint.facts)
    assert state is not None
    constraint.state = state
    full = [constraint._after(state, t, constraint.left) is not None for t in range(len(table.pieces))]
    written = [bool(p) for p in table.pieces]
    assert [a and w for a, w in zip(constraint.mask(), written)] == [a and w for a, w in zip(full, written)]
