"""Self-improvement on Optuna: trained candidates, five metrics, exact rollback, a daemon (see loop.py)."""

from ssm_metarl.rsi.loop import SPACE, CycleReport, SafetyStop, SelfImprovement, propose
from ssm_metarl.rsi.metrics import METRICS, Comparison, Measurement, Metrics, Reference, compare, compute

__all__ = [
    "METRICS",
    "SPACE",
    "Comparison",
    "CycleReport",
    "Measurement",
    "Metrics",
    "Reference",
    "SafetyStop",
    "SelfImprovement",
    "compare",
    "compute",
    "propose",
]
