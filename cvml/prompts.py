"""How a record becomes chat messages. Train, serve and bench all build prompts here,
so a model is always asked the same way it was taught."""

from __future__ import annotations

SYSTEM_PROMPT = "You improve CV text. Keep every fact; invent nothing."

_USER_TEMPLATES = {
    "rewrite_bullet": "Rewrite this CV bullet to be stronger:\n{source}",
    "tailor_section": "Tailor this CV section to the job.\nJob: {job}\nSection:\n{source}",
    "summary": "Write a profile summary from:\n{source}",
}


def build_messages(task: str, source_text: str, job_description: str | None = None) -> list[dict[str, str]]:
    """System + user messages for one task (the assistant turn is the target)."""
    if task not in _USER_TEMPLATES:
        raise ValueError(f"unknown task {task!r}; expected one of {sorted(_USER_TEMPLATES)}")
    user = _USER_TEMPLATES[task].format(source=source_text.strip(), job=(job_description or "").strip())
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]
