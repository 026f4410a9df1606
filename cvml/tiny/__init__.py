"""The embedded default: a tokenizer and tiny base model built locally, and synthetic CV data."""
