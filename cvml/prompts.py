"""How a record becomes chat messages, and chat messages become text. Train, serve, bench,
quantize and abtest all build and render prompts here, so a model is always asked the
same way it was taught."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cvml.errors import ModelError

SYSTEM_PROMPT = "You improve CV text. Keep every fact; invent nothing."

# The CV comes before the job description: a server with prefix caching then reuses the CV's
# KV cache when the same section is tailored to several jobs, or regenerated.
_USER_TEMPLATES = {
    "rewrite_bullet": "Rewrite this CV bullet to be stronger:\n{source}",
    "tailor_section": "Tailor this CV section to the job.\nSection:\n{source}\nJob: {job}",
    "summary": "Write a profile summary from:\n{source}",
}


def build_messages(task: str, source_text: str, job_description: str | None = None) -> list[dict[str, str]]:
    """System + user messages for one task (the assistant turn is the target)."""
    if task not in _USER_TEMPLATES:
        raise ValueError(f"unknown task {task!r}; expected one of {sorted(_USER_TEMPLATES)}")
    user = _USER_TEMPLATES[task].format(source=source_text.strip(), job=(job_description or "").strip())
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def render_chat(tokenizer, messages: Sequence[dict[str, Any]]) -> str:
    """The text a model reads for `messages`, up to and including the assistant's turn opener.

    Raises:
        ModelError: the tokenizer has no chat template.
    """
    _require_template(tokenizer)
    return tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)


def render_prompt(tokenizer, task: str, source_text: str, job_description: str | None = None) -> str:
    """The prompt text of one task, exactly as training renders it."""
    return render_chat(tokenizer, build_messages(task, source_text, job_description))


def render_example(
    tokenizer, task: str, source_text: str, job_description: str | None, target: str
) -> tuple[str, str]:
    """(prompt text, completion text) of one training example.

    The completion is the full conversation minus the prompt, so training and serving
    share the token boundary; a template whose prompt is not a prefix of the whole
    conversation is refused rather than silently misaligned.

    Raises:
        ModelError: no chat template, or one that does not render the prompt as a prefix.
    """
    messages = build_messages(task, source_text, job_description)
    prompt = render_chat(tokenizer, messages)
    full = tokenizer.apply_chat_template(messages + [{"role": "assistant", "content": target.strip()}], tokenize=False)
    if not full.startswith(prompt):
        raise ModelError(
            "the chat template does not render the prompt as a prefix of the full conversation",
            hint="cvml needs a template where the generation prompt precedes the assistant text.",
        )
    return prompt, full[len(prompt) :]


def _require_template(tokenizer) -> None:
    if not getattr(tokenizer, "chat_template", None):
        raise ModelError(
            "the tokenizer has no chat template",
            hint="Use an instruct/chat model, or a base model built by `cvml tiny model` (it ships one).",
        )
