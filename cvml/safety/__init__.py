"""Safety checks every stage shares: PII detection and redaction (`cvml.safety.pii`).

Curate redacts training pairs, serve redacts its request log, and bench counts PII that a
model leaks, all with the same detector, so "what counts as PII" is decided in one place.
"""
