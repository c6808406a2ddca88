"""The ``dspark`` command line: ``dspark <command> [options]`` (also ``python -m dspark.cli``).

One module per command in this package, each exposing ``add_parser(subparsers)``, which
registers the command and sets ``func``. :data:`COMMANDS` is the only list of commands: a new
command (``serve``, ``bench``, ...) is one module here and one row there. Every command reads
its settings the same way (:mod:`dspark.cli._settings`): ``--config FILE``, the flags, then
``--set KEY=VALUE``.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence

__all__ = ["COMMANDS", "build_parser", "main"]

# command name -> module that defines it (imported only when the parser is built, so importing
# dspark.cli stays cheap); the order is the order of `dspark --help`.
COMMANDS: dict[str, str] = {
    "demo": "dspark.cli.demo",
    "info": "dspark.cli.info",
    "eval": "dspark.cli.eval",
    "zoo": "dspark.cli.zoo",
    "regenerate": "dspark.cli.regenerate",
    "prepare": "dspark.cli.prepare",
    "train": "dspark.cli.train",
    "serve": "dspark.cli.serve",
    "bench": "dspark.cli.bench",
}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command in :data:`COMMANDS`."""
    parser = argparse.ArgumentParser(
        prog="dspark", description="dspark speculative-decoding toolkit"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module in COMMANDS.items():
        importlib.import_module(module).add_parser(sub)
        if name not in sub.choices:
            raise RuntimeError(f"{module}: expected add_parser to register {name!r}")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``dspark`` script; returns the exit code."""
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)
