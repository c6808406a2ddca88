"""Fixtures for drafter tests: tiny Qwen3 and Llama targets (session-scoped, read-only)."""

from __future__ import annotations

import pytest
import torch

from tests._tiny import tiny_llama, tiny_qwen3


@pytest.fixture(scope="session")
def qwen3_target():
    return tiny_qwen3(vocab=256, layers=4)


@pytest.fixture(scope="session")
def llama_target():
    return tiny_llama(vocab=256, layers=3)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
