"""cvml serve: the batching engine, the OpenAI-compatible HTTP app, A/B routing, the request log."""
