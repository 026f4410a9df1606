"""The middle floor's evaluation: load eval records, generate greedily with the trained
prompt format, score the outputs (reference metrics, text checks, safety checks).

Bench, quantize, abtest and train all evaluate here; none of them owns it.
"""

from cvml.evaluation.bias_probe import run_bias_probe
from cvml.evaluation.generation import generate_greedy, generate_outputs
from cvml.evaluation.quality import METRICS, QualityResult, evaluate_quality, load_eval_records, score_outputs

__all__ = [
    "METRICS", "QualityResult", "evaluate_quality", "generate_greedy", "generate_outputs", "load_eval_records",
    "run_bias_probe", "score_outputs",
]
