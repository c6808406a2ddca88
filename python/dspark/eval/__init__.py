"""Drafter evaluation: acceptance statistics, confidence diagnostics and wall-clock speed.

``evaluate(target, {"name": drafter, ...}, prompt_files)`` runs the reference protocol
(``docs/algorithms.md`` section 5) on JSONL prompt files and returns an :class:`EvalReport` (results
table, markdown/JSON, plots). The metric functions work on plain round records and can be used
on their own.
"""

from __future__ import annotations

from dspark.eval.acceptance import (
    RoundRecord,
    acceptance_summary,
    conditional_acceptance,
    conditional_auc,
    cumulative_survival,
    records_from_rounds,
    threshold_sweep,
)
from dspark.eval.datasets import ByteTokenizer, Prompt, PromptEncoder, encode_prompt, load_prompts
from dspark.eval.report import EvalReport, MethodResult
from dspark.eval.runner import BASELINE, PLAIN, EvalConfig, evaluate

__all__ = [
    "BASELINE",
    "PLAIN",
    "ByteTokenizer",
    "EvalConfig",
    "EvalReport",
    "MethodResult",
    "Prompt",
    "PromptEncoder",
    "RoundRecord",
    "acceptance_summary",
    "conditional_acceptance",
    "conditional_auc",
    "cumulative_survival",
    "encode_prompt",
    "evaluate",
    "load_prompts",
    "records_from_rounds",
    "threshold_sweep",
]
