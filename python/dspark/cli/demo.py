"""``dspark demo``: the micro zoo's drafters evaluated end to end (:func:`dspark.demo.run_demo`)."""

from __future__ import annotations

import argparse

from dspark.cli._settings import add_config_arguments, add_flag, call


def add_parser(sub: argparse._SubParsersAction) -> None:
    from dspark import demo

    p = sub.add_parser(
        "demo",
        help="evaluate the micro zoo's drafters at T=0 and T=1 against 4 baselines (a few minutes)",
        description=(demo.__doc__ or "").split("\n\n")[1],
    )
    add_flag(p, "--json", key="json_path", metavar="PATH", help="also write the table as JSON")
    add_flag(p, "--out", key="out_dir", help=f"report directory (default: {demo.DEFAULT_OUT})")
    add_flag(
        p, "--prompts", key="prompts_per_domain", type=int, help="held-out prompts per domain (6)"
    )
    add_flag(p, "--max-new-tokens", type=int, help="tokens per prompt (64)")
    add_flag(
        p,
        "--temperatures",
        type=float,
        nargs="+",
        metavar="T",
        help="sampling temperatures, each a full evaluation (default: 0 1)",
    )
    add_flag(
        p,
        "--engine",
        choices=("auto", "paged", "hf"),
        help="where the drafters and plain decoding run the target (default: auto = paged)",
    )
    add_flag(p, "--zoo", help="zoo directory (default: the package's)")
    add_flag(
        p, "--no-assisted", key="assisted", action="store_false", help="skip HF assisted generation"
    )
    add_flag(
        p,
        "--no-prompt-lookup",
        key="prompt_lookup",
        action="store_false",
        help="skip HF prompt-lookup decoding",
    )
    add_flag(p, "--no-plots", key="plots", action="store_false")
    add_flag(p, "--seed", type=int, help="(default: 980406)")
    add_config_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dspark.demo import run_demo

    call(args, run_demo, print_fn=print)
    return 0
