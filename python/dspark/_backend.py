"""Loads the native module and reports what was built and what is usable here."""

from __future__ import annotations

from typing import Any

from dspark import _C

__all__ = ["backends", "cuda_available", "require_cuda"]


def backends() -> dict[str, Any]:
    """Describe the native backends.

    Returns
    -------
    dict
        ``cpu`` (always True), ``cpu_isa`` (SIMD variant chosen at run time), ``openmp``,
        ``cpu_threads``, ``cuda_built``, ``cuda_archs``, ``cutlass``, ``cuda_devices``,
        ``cuda_available`` and ``cuda_error`` (why CUDA is not usable, or ``""``).

    Examples
    --------
    >>> import dspark
    >>> dspark.backends()["cpu"]
    True
    """
    n, _err, msg = _C.cuda_device_count()
    return {
        "cpu": True,
        "cpu_isa": _C.cpu_isa(),
        "openmp": bool(_C.built_with_openmp),
        "cpu_threads": int(_C.cpu_num_threads()),
        "cuda_built": bool(_C.built_with_cuda),
        "cuda_archs": _C.cuda_archs if _C.built_with_cuda else "",
        "cutlass": bool(_C.built_with_cutlass),
        "cuda_devices": int(n),
        "cuda_available": bool(_C.built_with_cuda) and n > 0,
        "cuda_error": msg,
    }


def cuda_available() -> bool:
    """True when dspark was built with CUDA and a CUDA device is usable."""
    return bool(_C.built_with_cuda) and _C.cuda_device_count()[0] > 0


def require_cuda(arg: str) -> None:
    """Raise a ValueError naming ``arg`` when a CUDA tensor reaches a build without CUDA."""
    if not _C.built_with_cuda:
        raise ValueError(
            f"{arg}: got a CUDA tensor, but dspark was built without CUDA; reinstall with nvcc on "
            "PATH (DSPARK_CUDA=ON pip install --no-build-isolation .)"
        )
