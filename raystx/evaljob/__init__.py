"""The evaluation job: ``raystx evaluate CONFIG.yaml`` / ``jobs/eval.py`` runs evaluators from a config on a saved
model across Ray workers (sharded encoding) and writes the metrics as JSON and a Markdown table.

``config`` (schema, loading, building the evaluators on the driver), ``run`` (the Ray Train workers) and
``report`` (the output files). Importing this package does not import Ray.
"""

from __future__ import annotations

from raystx.evaljob.config import EvalJobConfig, build_evaluators, load_eval_config
from raystx.evaljob.run import run_evaluation

__all__ = ["EvalJobConfig", "build_evaluators", "load_eval_config", "run_evaluation"]
