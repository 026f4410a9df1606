"""cvml abtest: decide between two model versions with sound statistics.

- `offline`: both models answer the same eval examples; paired tests per metric.
- `experiments`: the online experiment record that `cvml serve` routes by.
- `online`: analysis of serve's request log (SRM, fixed-horizon and sequential tests).
- `decision`: SHIP / DON'T SHIP / INCONCLUSIVE from a primary metric, guardrails and an MDE.
- `promotion`: stopping an experiment moves registry aliases (promote or roll back).
- `stats`, `sequential`, `power`: the statistics, vectorised and validated by simulation.

Nothing is imported here, so that `cvml serve` can read an experiment without numpy or scipy.
"""
