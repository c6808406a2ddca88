"""Shared fixtures: the `device` fixture (cpu, plus cuda when usable) and the cuda marker skip.

Nothing here touches CUDA at import time.
"""

from __future__ import annotations

import pytest
import torch


def _cuda_usable() -> bool:
    import dspark

    return dspark.cuda_available() and torch.cuda.is_available()


def pytest_collection_modifyitems(config, items):
    if _cuda_usable():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (none usable here)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def device(request) -> torch.device:
    return torch.device(request.param)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
