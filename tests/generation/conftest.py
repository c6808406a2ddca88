"""Fixtures for generation tests: tiny targets built in-test (no downloads), one torch thread."""

from __future__ import annotations

import pytest
import torch

from tests._tiny import tiny_qwen3


@pytest.fixture(scope="session")
def peaked_target():
    """Qwen3, vocab 256, 4 layers, LM head scaled so greedy/sampled continuations are peaked."""
    return tiny_qwen3(vocab=256, layers=4, logit_scale=20.0)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
