"""Pass/fail checks of one model output that need no reference: format compliance and an
action-verb start in any inflection.

The vocabulary is shared: action verbs, words, length bands and job-ad keywords come from
`cvml.safety.textscore` (which the bias probe scores with too), so bench and the probe
judge a rewrite by the same rules. What this module adds:

- `starts_with_action_verb` also accepts inflections of the shared lexicon ("Automates",
  "Leading", "Re-designed" when "automated", "led", "designed" are listed).
- `format_problems` turns the shared length band into a hard bound and adds what makes an
  output unusable as it stands: a bullet on several lines, a list inside a summary,
  chat-template tokens (`<|im_end|>`, `</s>`, `[INST]`), an echo of the prompt (role lines,
  instruction text), PII placeholders (`<EMAIL_1>`) copied from redacted training data.
"""

from __future__ import annotations

import re
from functools import lru_cache

from cvml.data.records import TASKS
from cvml.prompts import SYSTEM_PROMPT, build_messages
from cvml.safety import textscore
from cvml.safety.pii import PII_TYPES

FORMAT_PROBLEMS = (
    "empty", "multi_line", "too_short", "too_long", "list_in_summary", "template_token", "prompt_echo", "placeholder",
)
_TEMPLATE_TOKEN = re.compile(
    r"<\|[A-Za-z0-9_]+\|>|</?s>|\[/?INST\]|<</?SYS>>|<(?:start|end)_of_turn>|<(?:bos|eos|pad|unk)>"
)
_ROLE_LINE = re.compile(r"^\s*(?:system|user|assistant|human)\s*:?\s*$", re.IGNORECASE | re.MULTILINE)
_PLACEHOLDER = re.compile(rf"<(?:{'|'.join(PII_TYPES)})_\d+>")
_LIST_LINE = re.compile(r"^\s*(?:[-–—*•·▪●◆➢]|\d{1,2}[.)])\s+", re.MULTILINE)
_FIRST_WORD = re.compile(r"[^\W\d_][^\W\d_'’-]*(?:-[^\W\d_]+)*")
# Prefixes tried off before a second look: "redesigned" -> "designed", "co-led" -> "led".
_VERB_PREFIXES = ("re", "co")


def first_word(text: str) -> str:
    """The first word of the first non-empty line, lower-cased, without bullet marks, markup or hyphens."""
    for line in text.splitlines():
        match = _FIRST_WORD.search(_LIST_LINE.sub("", line, count=1))
        if match:
            return match.group(0).lower().replace("-", "")
    return ""


def _inflections(word: str) -> set[str]:
    """The word and the past-tense forms it may stand for: -s, -es, -ies, -ing, -ed spellings."""
    bases = {word}
    if word.endswith("ies"):
        bases.add(word[:-3] + "y")
    elif word.endswith("es"):
        bases |= {word[:-1], word[:-2]}
    elif word.endswith("s") and not word.endswith("ss"):
        bases.add(word[:-1])
    if word.endswith("ing") and len(word) > 5:
        stem = word[:-3]
        bases |= {stem, stem + "e"} | ({stem[:-1]} if stem[-1] == stem[-2] else set())
    forms = set(bases)
    for base in bases:
        if base.endswith("e"):
            forms.add(base + "d")
        elif base.endswith("y") and base[-2:-1] not in "aeiou":
            forms.add(base[:-1] + "ied")
        else:
            forms |= {base + "ed", base + base[-1] + "ed"}
    return forms


def starts_with_action_verb(text: str) -> bool:
    """Whether the text opens with a verb of the shared action-verb lexicon, in any inflection."""
    word = first_word(text)
    if not word:
        return False
    candidates = {word} | {word[len(p):] for p in _VERB_PREFIXES if word.startswith(p) and len(word) > len(p) + 2}
    return any(_inflections(candidate) & textscore.ACTION_VERBS for candidate in candidates)


@lru_cache(maxsize=1)
def _prompt_fragments() -> tuple[str, ...]:
    """Instruction lines of every task's prompt, lower-cased: text a model should never repeat."""
    lines = {SYSTEM_PROMPT.lower()}
    for task in TASKS:
        user = build_messages(task, "x", "x")[1]["content"]
        lines |= {line.strip().lower() for line in user.splitlines() if len(line.strip()) > 8}
    return tuple(sorted(lines))


def format_problems(task: str, output: str, source_text: str = "") -> list[str]:
    """Every way the output breaks its task's format; empty when it complies.

    Length: `textscore.length_band(task, source_text)` words, bounds included. A
    rewrite_bullet must be one line; a summary must hold no list lines.

    Returns:
        Codes from FORMAT_PROBLEMS, in that order.
    """
    text = output.strip()
    if not text:
        return ["empty"]
    problems = []
    if task == "rewrite_bullet" and sum(1 for line in text.splitlines() if line.strip()) > 1:
        problems.append("multi_line")
    low, high = textscore.length_band(task, source_text)
    words = textscore.word_count(text)
    if words < low:
        problems.append("too_short")
    if words > high:
        problems.append("too_long")
    if task == "summary" and _LIST_LINE.search(text):
        problems.append("list_in_summary")
    if _TEMPLATE_TOKEN.search(text):
        problems.append("template_token")
    lowered = text.lower()
    if _ROLE_LINE.search(text) or any(fragment in lowered for fragment in _prompt_fragments()):
        problems.append("prompt_echo")
    if _PLACEHOLDER.search(text):
        problems.append("placeholder")
    return problems
