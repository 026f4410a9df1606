"""cvml: the lifecycle of the language models behind a CV optimization product."""

__version__ = "0.1.0"
