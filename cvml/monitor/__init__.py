"""`cvml monitor`: what the served model meets and does in production, and when to retrain.

    from cvml.monitor import Monitor
    from cvml.monitor.report import write_report
    result = Monitor(spec, log=None, registry=None, seed=42).report()
    write_report(result, "monitor/today")                  # report.json, report.html, PNGs, manifest
    result.exit_code                                       # 0 no drift, 1 drift or a quality alert

Modules, by what they hold: `logrows` (a window of serve's request log), `model` (the
monitored version: training data, vocabulary, tokenizer), `reference` (training split or a
past window), `features` (what is measured per request), `stattests` (the per-feature
tests and their thresholds), `classifier` (the domain classifier), `drift` (the input
drift verdict), `quality` (rates, tests, latency, feedback), `api` (`Monitor`), `report` /
`html` / `plots` (what is written), `alerts` (webhook), `gauges` (Prometheus), `watch`
(the loop), `export` (production rows for `cvml curate`), `simulate` (synthetic traffic
for tests and the power benchmark).
"""

from cvml.monitor.api import SCHEMA, Monitor, MonitorResult

__all__ = ["SCHEMA", "Monitor", "MonitorResult"]
