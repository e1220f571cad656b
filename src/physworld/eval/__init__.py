"""Evaluation: every model scored against the physics engine (accuracy, baselines, speed, OOD),
written as results.json and a self-contained HTML report."""

from physworld.eval.run import EvalConfig, Evaluation, evaluate, run_eval

__all__ = ["EvalConfig", "Evaluation", "evaluate", "run_eval"]
