"""Settings shared by every command: a JSON config file, flags, ``--set KEY=VALUE`` overrides.

A command's settings are one flat mapping from keys to values, resolved in this order (later
wins): the defaults of the object that takes them (a dataclass such as
:class:`dspark.eval.EvalConfig`, or a function's keyword parameters), the ``--config`` file,
the flags given on the command line, then ``--set``. A flag registered with :func:`add_flag`
sets exactly one key (its ``dest``); flags that are not given leave the key alone, so a flag
never overrides the file with its default. Keys are checked against the object that takes them:
an unknown or missing key is a ``ValueError`` naming it.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["add_config_arguments", "add_flag", "call", "construct", "parse_overrides"]

T = TypeVar("T")

_FLAGS = "_settings_flags"  # namespace attribute: setting key -> the flag that sets it


def add_config_arguments(parser: argparse.ArgumentParser, what: str = "settings") -> None:
    """Add ``--config FILE`` and the repeatable ``--set KEY=VALUE`` to a command's parser."""
    parser.add_argument(
        "--config",
        default=None,
        metavar="FILE",
        help=f"JSON object of {what} (keys as the flags, with '_' for '-'); flags override it",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one setting (VALUE is JSON, else a string), e.g. --set max_new_tokens=64",
    )


def add_flag(
    parser: argparse._ActionsContainer, *names: str, key: str | None = None, **kwargs: Any
) -> None:
    """``parser.add_argument(*names, **kwargs)`` for a flag that sets the setting ``key``.

    ``key`` defaults to argparse's ``dest`` (``--max-new-tokens`` -> ``max_new_tokens``). The
    flag has no default of its own: the setting's default belongs to the object that takes it.
    """
    if key is not None:
        kwargs["dest"] = key
    action = parser.add_argument(*names, default=argparse.SUPPRESS, **kwargs)
    flags = dict(parser.get_default(_FLAGS) or {})
    flags[action.dest] = action.option_strings[0] if action.option_strings else action.dest
    parser.set_defaults(**{_FLAGS: flags})


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """``["max_steps=100", "kind=dspark"]`` -> ``{"max_steps": 100, "kind": "dspark"}``.

    Each value is parsed as JSON (numbers, booleans, null, lists, objects) and kept as a string
    when it is not JSON.
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, val = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set: expected KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(val)
        except json.JSONDecodeError:
            out[key] = val
    return out


def _read_config(path: str) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"--config: {p} does not exist")
    try:
        d = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"--config: {p} is not valid JSON ({e.msg})") from None
    if not isinstance(d, dict):
        raise ValueError(f"--config: expected a JSON object in {p}, got {type(d).__name__}")
    return d


def _gather(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, str]]:
    """The settings (file, then flags given, then --set) and the flag of each flag key."""
    flags: dict[str, str] = getattr(args, _FLAGS, {})
    d = _read_config(args.config) if args.config else {}
    d.update({k: getattr(args, k) for k in flags if hasattr(args, k)})
    d.update(parse_overrides(args.overrides))
    return d, flags


def _check(d: dict[str, Any], known: set[str], required: list[str], flags: dict[str, str]) -> None:
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(f"settings: unknown keys {unknown} (known: {sorted(known)})")
    missing = [k for k in required if k not in d]
    if missing:
        how = ", ".join(f"{k} ({flags[k]})" if k in flags else k for k in missing)
        raise ValueError(
            f"settings: expected {how} as a flag, in --config or with --set; got none of them"
        )


def construct(args: argparse.Namespace, *classes: type) -> tuple[Any, ...]:
    """One instance of each dataclass in ``classes``, built from the command's settings.

    Each key goes to the class that has a field of that name (keys must belong to one).
    """
    d, flags = _gather(args)
    fields = [{f.name: f for f in dataclasses.fields(c)} for c in classes]
    required = [
        n
        for fs in fields
        for n, f in fs.items()
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    _check(d, set().union(*fields), required, flags)
    return tuple(
        cls(**{k: v for k, v in d.items() if k in fs})
        for cls, fs in zip(classes, fields, strict=True)
    )


def call(args: argparse.Namespace, fn: Callable[..., T], **fixed: Any) -> T:
    """``fn(**settings, **fixed)``; the settings are the keyword parameters not in ``fixed``."""
    d, flags = _gather(args)
    params = {
        n: p
        for n, p in inspect.signature(fn).parameters.items()
        if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and n not in fixed
    }
    _check(d, set(params), [n for n, p in params.items() if p.default is p.empty], flags)
    return fn(**d, **fixed)
