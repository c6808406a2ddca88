"""The dspark command line."""

from __future__ import annotations

import json

import pytest

from dspark.cli import build_parser, main


def test_cli_info_json(capsys):
    assert main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["cpu"] is True and "cuda_available" in info


def test_cli_requires_a_command():
    with pytest.raises(SystemExit):
        build_parser().parse_args([])
