"""Small shared helpers."""

from dspark.utils.io import atomic_write

__all__ = ["atomic_write"]
