"""cvml abtest: decide between two model versions with sound statistics.

- `offline`: both models answer the same eval examples; paired tests per metric.
- `online`: analysis of serve's request log (SRM, fixed-horizon and sequential tests).
- `decision`: SHIP / DON'T SHIP / INCONCLUSIVE from a primary metric, guardrails and an MDE.
- `promotion`: stopping an experiment moves registry aliases (promote or roll back).
- `stats`, `sequential`, `power`: the statistics, vectorised and validated by simulation.

The online experiment record that `cvml serve` routes by is the registry's
(`cvml.registry.experiments`), so serving never imports this area.
"""
