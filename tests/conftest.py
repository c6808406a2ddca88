"""Shared fixtures: the `device` fixture (cpu, plus cuda when usable) and the cuda marker skip.

Nothing here touches CUDA at import time.
"""

from __future__ import annotations

from pathlib import Path

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


# Test directories that run tiny models: a second OpenMP thread only adds contention there (on a
# shared 2-core machine); the op tests keep the default thread count.
_ONE_THREAD_DIRS = {"eval", "generation", "models", "training"}


@pytest.fixture(autouse=True)
def _one_thread(request):
    here = Path(__file__).parent
    path = Path(request.path)
    if not path.is_relative_to(here) or path.relative_to(here).parts[0] not in _ONE_THREAD_DIRS:
        yield
        return
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
