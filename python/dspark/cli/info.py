"""``dspark info``: what was built and what is usable on this machine."""

from __future__ import annotations

import argparse
import json

from dspark.cli._settings import add_config_arguments, add_flag, call


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="show the native backends and versions")
    add_flag(p, "--json", key="as_json", action="store_true", help="print JSON")
    add_config_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return call(args, show_info)


def show_info(*, as_json: bool = False) -> int:
    """Print dspark's and torch's versions and the native backends (``dspark.backends()``)."""
    import torch

    import dspark

    info = {"dspark": dspark.__version__, "torch": torch.__version__, **dspark.backends()}
    if as_json:
        print(json.dumps(info, indent=2))
    else:
        for k, v in info.items():
            print(f"{k:>16}: {v}")
    return 0
