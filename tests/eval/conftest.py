"""Fixtures for evaluation tests: a tiny peaked target, an oracle and untrained drafters."""

from __future__ import annotations

import json

import pytest
import torch

from dspark.models import build_drafter
from tests._tiny import OracleDrafter, tiny_qwen3

BOS = 1  # every test prompt starts with it, so the oracle knows each request's first token


class BosOracle(OracleDrafter):
    """The test oracle with a fixed first token (evaluate() does not know about first_tokens)."""

    def new_state(self, batch):
        return {"hist": [[BOS] for _ in range(batch)]}


@pytest.fixture(scope="session")
def target():
    return tiny_qwen3(vocab=256, layers=2, logit_scale=20.0)


@pytest.fixture
def oracle(target):
    return BosOracle(target, block_size=4, scale=0.5)


@pytest.fixture
def dspark_drafter(target):
    torch.manual_seed(1)
    return build_drafter("dspark", target, num_layers=1, markov_rank=16, block_size=4).eval()


def write_prompts(path, rows):
    """JSONL with pre-tokenised prompts (each starting with BOS)."""
    path.write_text("".join(json.dumps({"input_ids": [BOS, *r]}) + "\n" for r in rows))
    return path


@pytest.fixture
def prompt_file(tmp_path):
    return write_prompts(
        tmp_path / "bench.jsonl", [[5, 9, 17, 33], [200, 3], [7, 7, 7, 7, 7, 8], [42]]
    )
