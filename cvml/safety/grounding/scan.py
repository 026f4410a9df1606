"""The character-level rule of grounded decoding, read one character at a time.

A text is grounded (for a `Facts`) when:
- every digit run (digits joined by "." or ",": "1,200", "3.5") is one of `facts.numbers`;
- no whole word is one of `facts.blocked_words` (number and degree words the inputs lack);
- in strict mode, every capitalised word that does not open a sentence or a bullet is one
  of `facts.cap_words`.

The decoder needs the rule on prefixes: `step` refuses a character as soon as the text
cannot end grounded any more (a digit run that is no prefix of an allowed number, a
capitalised word that is no prefix of an input word), so a number or a name can only be
started when it can be finished, and `settled` says whether the text may end here. Word
completion is checked when the word ends, so "tw" may go on to "twitter" but not end as
"twelve" (unless the inputs hold twelve).
"""

from __future__ import annotations

from typing import NamedTuple

from cvml.safety.grounding.facts import Facts

_SEPARATORS = ".,"
_SENTENCE_PUNCT = frozenset(".!?:;|–—-")  # followed by a space, the next word opens a sentence
_BULLETS = frozenset("•*▪►●·")  # the next word opens an item, space or not


class State(NamedTuple):
    """Where a text stands: its open digit run and word, and whether a word starting now
    opens a sentence."""

    num: str = ""  # the open digit run, possibly ending in a pending separator ("1,")
    word: str = ""  # the open word, lower case, kept while it is locked or may become blocked
    in_word: bool = False
    locked: bool = False  # the open word is capitalised mid-sentence: it must be an input word
    relevant: bool = False  # the open word is a prefix of a blocked word
    opens: bool = True  # a word starting now opens a sentence
    after_punct: bool = False  # the last non-space character ends a sentence if a space follows


START = State()


def step(state: State, c: str, facts: Facts) -> State | None:
    """The state after one more character, or None when it makes the text ungroundable."""
    if c.isdecimal():
        state = _close_word(state, facts)
        if state is None:
            return None
        num = state.num + c
        if facts.numbers is not None and num not in facts.number_prefixes:
            return None
        return State(num=num, opens=False)
    if c in _SEPARATORS and state.num and state.num[-1].isdecimal():
        num = state.num + c
        if facts.numbers is not None and num not in facts.number_prefixes and state.num not in facts.numbers:
            return None  # neither a longer allowed number nor the end of an allowed one
        return State(num=num, opens=False, after_punct=c == ".")
    if state.num:
        state = _close_number(state, facts)
        if state is None:
            return None
    if c.isalpha():
        if state.in_word:
            word, locked, relevant = state.word + c.lower(), state.locked, state.relevant
        else:
            word = c.lower()
            locked = facts.cap_words is not None and c.isupper() and not state.opens
            relevant = True
        relevant = relevant and word in facts.blocked_prefixes
        if locked and word not in facts.cap_prefixes:
            return None
        return State(word=word if locked or relevant else "", in_word=True, locked=locked, relevant=relevant,
                     opens=False)
    state = _close_word(state, facts)
    if state is None:
        return None
    if c.isspace():
        return State(opens=state.opens or c == "\n" or state.after_punct, after_punct=state.after_punct)
    if c in _BULLETS:
        return State(opens=True)
    return State(opens=False, after_punct=c in _SENTENCE_PUNCT)


def scan(state: State, text: str, facts: Facts) -> State | None:
    """The state after `text`, or None when some character of it is refused."""
    for c in text:
        state = step(state, c, facts)
        if state is None:
            return None
    return state


def settled(state: State, facts: Facts) -> bool:
    """Whether the text may end here: its open number and word are complete and allowed."""
    return _close_word(state, facts) is not None and (not state.num or _close_number(state, facts) is not None)


def distance(state: State, facts: Facts) -> int:
    """The fewest characters after which the text may end (0: it may end now). A decoder
    with n tokens left allows only states at distance <= n: every character has a token
    of its own in a byte-level or byte-fallback vocabulary, so each step can write one."""
    needed = 0
    if state.num and _close_number(state, facts) is None:
        needed = facts.number_prefixes[state.num]
    if state.in_word:
        if state.locked and state.word not in facts.cap_words:
            needed = max(needed, facts.cap_prefixes[state.word])
        elif state.relevant and state.word in facts.blocked_words:
            needed = max(needed, 1)  # one more letter makes it another word ("tens")
    return needed


def grounded(text: str, facts: Facts) -> bool:
    """Whether a whole text keeps the rule (what the constraint guarantees of its output)."""
    state = scan(START, text, facts)
    return state is not None and settled(state, facts)


def _close_number(state: State, facts: Facts) -> State | None:
    run = state.num.rstrip(_SEPARATORS)
    if facts.numbers is not None and run not in facts.numbers:
        return None
    return State(opens=state.opens, after_punct=state.after_punct)


def _close_word(state: State, facts: Facts) -> State | None:
    if not state.in_word:
        return state
    if state.locked and state.word not in facts.cap_words:
        return None
    if state.relevant and state.word in facts.blocked_words:
        return None
    return State(opens=False)
