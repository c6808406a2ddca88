"""The ``dspark`` command line: ``dspark <command> [options]``.

Each command lives in its own module exposing ``add_parser(subparsers)`` (which registers the
command and sets ``func``); add new commands to ``_COMMANDS``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# command name -> module that defines it (imported lazily so `dspark --help` stays fast)
_COMMANDS: dict[str, str] = {
    "demo": "dspark.demo",
    "info": "dspark.cli_info",
    "zoo": "dspark.zoo.cli",
    "eval": "dspark.cli_eval",
    "prepare": "dspark.training.cli_prepare",
    "train": "dspark.training.cli_train",
    "regenerate": "dspark.training.cli_regenerate",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dspark", description="dspark speculative-decoding toolkit"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module in _COMMANDS.items():
        importlib.import_module(module).add_parser(sub)
        assert name in sub.choices, f"{module} did not register {name}"
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``dspark`` script; returns the exit code."""
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
