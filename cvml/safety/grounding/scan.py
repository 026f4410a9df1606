"""The character-level rule of grounded decoding, read one character at a time.

A text is grounded (for a `Facts`) when:
- every digit run (digits joined by "." or ",": "1,200", "3.5") is one of `facts.numbers`,
  and a number written with a unit or currency ("15%", "$51", "6 years", "twelve hours")
  is a quantity the inputs support (`facts.quantity_ok`, the fabrication check's rule);
- no whole word is one of `facts.blocked_words` (number and degree words the inputs lack);
- in strict mode, every capitalised word that does not open a sentence or a bullet is one
  of `facts.cap_words`.

The decoder needs the rule on prefixes: `step` refuses a character as soon as the text
cannot end grounded any more (a digit run that is no prefix of an allowed number, a
capitalised word that is no prefix of an input word), so a number or a name can only be
started when it can be finished, and `settled` says whether the text may end here. Word
completion is checked when the word ends, so "tw" may go on to "twitter" but not end as
"twelve" (unless the inputs hold twelve), and "15 hour" may become "15 hours" only if the
inputs hold that quantity.
"""

from __future__ import annotations

from typing import NamedTuple

from cvml.safety.grounding.facts import NUMBER_WORDS, Facts

_SEPARATORS = ".,"
_SENTENCE_PUNCT = frozenset(".!?–—-")  # followed by a space, the next word opens a sentence (or an item)
_BULLETS = frozenset("•*▪►●·")  # the next word opens an item, space or not
_CURRENCY = frozenset("$£€₹")
# Words that make a number a quantity of some kind (the fabrication check's units), and
# those after which a quantity may still go on ("5 million dollars", "15 per cent").
_UNITS = frozenset("""percent pct cent year years yr yrs month months mo mos week weeks wk wks day days hour hours hr
hrs minute minutes min mins decade decades dollars euro euros pounds rupees thousand million billion lakh lakhs lac
lacs crore crores k m mn mm bn b cr x dozen""".split())
_GOES_ON = frozenset("per thousand million billion lakh lakhs lac lacs crore crores k m mn mm bn cr".split()) | set(
    NUMBER_WORDS
)
_MAX_UNIT_WORDS = 3


class State(NamedTuple):
    """Where a text stands: its open digit run, word and quantity, and whether a word
    starting now opens a sentence."""

    num: str = ""  # the open digit run, possibly ending in a pending separator ("1,")
    num_cur: str = ""  # the currency sign before the open digit run
    cur: str = ""  # the currency sign that is the last non-space character
    word: str = ""  # the open word, lower case, kept while it is locked or followed
    in_word: bool = False
    locked: bool = False  # the open word is capitalised mid-sentence: it must be an input word
    relevant: bool = False  # the open word is a prefix of a blocked or number word
    opens: bool = True  # a word starting now opens a sentence
    after_punct: bool = False  # the last non-space character ends a sentence if a space follows
    qty: str = ""  # an open quantity: a number and what followed it, while a unit may still come
    qwords: int = 0  # unit words read after the number
    qdone: bool = True  # the open quantity holds as it stands (money must still be checked)


START = State()


def step(state: State, c: str, facts: Facts) -> State | None:
    """The state after one more character, or None when it makes the text ungroundable."""
    if c.isdecimal():
        state = _close_word(state, facts)
        if state is None or not _quantity_ends(state, facts):
            return None
        cur = state.num_cur if state.num else state.cur
        num = state.num + c
        if facts.numbers is not None and num not in (facts.money_prefixes if cur else facts.number_prefixes):
            return None
        return State(num=num, num_cur=cur, opens=False)
    if c in _SEPARATORS and state.num and state.num[-1].isdecimal():
        num = state.num + c
        prefixes = facts.money_prefixes if state.num_cur else facts.number_prefixes
        if facts.numbers is not None and num not in prefixes and close_number(state, facts) is None:
            return None  # neither a longer allowed number nor the end of an allowed one
        return state._replace(num=num, after_punct=c == ".")
    if state.num:
        state = close_number(state, facts)
        if state is None:
            return None
    if c.isalpha():
        return _letter(state, c, facts)
    state = _close_word(state, facts)
    if state is None:
        return None
    qty, qwords, qdone = "", 0, True
    if state.qty:
        if c == "%":
            if not facts.quantity_ok(state.qty.rstrip() + c):
                return None
        elif c in " \t" and state.qwords < _MAX_UNIT_WORDS:
            qty, qwords, qdone = state.qty.rstrip() + " ", state.qwords, state.qdone
        elif not _quantity_ends(state, facts):
            return None
    if c.isspace():
        cur = state.cur if c != "\n" else ""
        return State(cur=cur, opens=state.opens or c == "\n" or state.after_punct, after_punct=state.after_punct,
                     qty=qty, qwords=qwords, qdone=qdone)
    if c in _BULLETS:
        return State(opens=True)
    return State(cur=c if c in _CURRENCY else "", opens=False, after_punct=c in _SENTENCE_PUNCT)


def _letter(state: State, c: str, facts: Facts) -> State | None:
    if state.in_word:
        word, locked, relevant = state.word + c.lower(), state.locked, state.relevant
    else:
        word = c.lower()
        locked = facts.cap_words is not None and c.isupper() and not state.opens
        relevant = True
    relevant = relevant and word in facts.tracked_prefixes
    if locked and word not in facts.cap_prefixes:
        return None
    qty = state.qty + c if state.qty else ""
    return State(word=word if locked or relevant else "", in_word=True, locked=locked, relevant=relevant,
                 opens=False, qty=qty, qwords=state.qwords, qdone=state.qdone)


def scan(state: State, text: str, facts: Facts) -> State | None:
    """The state after `text`, or None when some character of it is refused."""
    for c in text:
        state = step(state, c, facts)
        if state is None:
            return None
    return state


def settled(state: State, facts: Facts) -> bool:
    """Whether the text may end here: its open number, word and quantity are allowed."""
    if state.num and (state := close_number(state, facts)) is None:
        return False
    state = _close_word(state, facts)
    return state is not None and _quantity_ends(state, facts)


def distance(state: State, facts: Facts) -> int:
    """The fewest characters after which the text may end (0: it may end now). A decoder
    with n tokens left allows only states at distance <= n: every character has a token
    of its own in a byte-level or byte-fallback vocabulary, so each step can write one."""
    needed = 0
    if state.num and close_number(state, facts) is None:
        needed = (facts.money_prefixes if state.num_cur else facts.number_prefixes)[state.num]
    if state.in_word:
        if state.locked and state.word not in facts.cap_words:
            needed = max(needed, facts.cap_prefixes[state.word])
        elif _close_word(state, facts) is None:
            needed = max(needed, 1)  # one more letter makes it another word ("tens", "hourly")
    return needed


def grounded(text: str, facts: Facts) -> bool:
    """Whether a whole text keeps the rule (what the constraint guarantees of its output)."""
    state = scan(START, text, facts)
    return state is not None and settled(state, facts)


def close_number(state: State, facts: Facts) -> State | None:
    """The digit run ends: it must be an allowed number; then a unit may follow it (after a
    currency sign the quantity is checked once its scale, if any, is written)."""
    run = state.num.rstrip(_SEPARATORS)
    if facts.numbers is None:
        return State(opens=state.opens, after_punct=state.after_punct)
    if run not in facts.numbers:
        return None
    return State(opens=state.opens, after_punct=state.after_punct, qty=state.num_cur + run, qdone=not state.num_cur)


def _quantity_ends(state: State, facts: Facts) -> bool:
    """An open quantity ends without a unit: money must hold as written ("$51")."""
    return not state.qty or state.qdone or facts.quantity_ok(state.qty.rstrip())


def _close_word(state: State, facts: Facts) -> State | None:
    """The word ends: not a blocked word, an input word if locked; a unit after a number
    must make a quantity the inputs support; a number word opens a quantity."""
    if not state.in_word:
        return state
    if state.locked and state.word not in facts.cap_words:
        return None
    if state.relevant and state.word in facts.blocked_words and not (state.qty and state.word in _UNITS):
        return None  # a scale after a number ("$2 million") is judged with its number below
    if facts.numbers is None:
        return State(opens=False)
    if state.qty:
        before = state.qty.rstrip("".join(_letters(state.qty)))
        unit = state.qty[len(before):].lower()
        if unit in _UNITS:
            if not facts.quantity_ok(state.qty):
                return None
            if unit in _GOES_ON:
                return State(opens=False, qty=state.qty, qwords=state.qwords + 1)
            return State(opens=False)
        if unit in _GOES_ON:  # "per", a number word: the quantity goes on
            return State(opens=False, qty=state.qty, qwords=state.qwords + 1, qdone=state.qdone)
        if "," in before and not before.endswith(" "):
            return None  # "2,018s" reads as the number 2: a word glued to a grouped number is refused
        if not _quantity_ends(state._replace(qty=before), facts):
            return None
        return State(opens=False)
    if state.relevant and state.word in NUMBER_WORDS:
        return State(opens=False, qty=state.word)
    return State(opens=False)


def _letters(text: str) -> set[str]:
    return {c for c in text if c.isalpha()}
