"""One place that knows which spelling of a transformers API the installed release expects.

transformers 5.x renamed the ``past_key_values=`` keyword of model forwards to ``cache=``
(5.24 warns on the old name; 5.40 removes it). Every dspark call that hands a model its KV cache
goes through :func:`cache_kwargs`, so the keyword is chosen once per model class from its real
signature, never by comparing version strings.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

__all__ = ["cache_keyword", "cache_kwargs"]


@functools.cache
def _cache_keyword_of(cls: Any) -> str:
    try:
        params = inspect.signature(cls.forward).parameters
    except (TypeError, ValueError):  # builtins or C extensions: assume the current spelling
        return "cache"
    if "cache" in params:
        return "cache"
    if "past_key_values" in params:
        return "past_key_values"
    # A forward that only takes **kwargs (a wrapper): current transformers reads ``cache``.
    return "cache"


def cache_keyword(model: Any) -> str:
    """The keyword (``"cache"`` or ``"past_key_values"``) ``model``'s forward takes its KV cache by.

    Examples
    --------
    >>> class Old:
    ...     def forward(self, input_ids, past_key_values=None): ...
    >>> cache_keyword(Old())
    'past_key_values'
    """
    return _cache_keyword_of(type(model))  # type: ignore[arg-type]  # a class is hashable


def cache_kwargs(model: Any, cache: Any) -> dict[str, Any]:
    """``{keyword: cache}`` for ``model(**inputs, **cache_kwargs(model, cache))``."""
    return {cache_keyword(model): cache}
