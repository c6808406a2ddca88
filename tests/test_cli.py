"""The dspark command line: the command table and the settings every command shares."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from dspark.cli import COMMANDS, build_parser, main
from dspark.cli._settings import construct, parse_overrides
from dspark.cli.eval import EvalRun
from dspark.eval import EvalConfig
from dspark.training import TrainConfig


def test_cli_info_json(capsys):
    assert main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["cpu"] is True and "cuda_available" in info


def test_cli_requires_a_command():
    with pytest.raises(SystemExit):
        build_parser().parse_args([])


def test_cli_table_lists_every_command():
    assert set(build_parser()._subparsers._group_actions[0].choices) == set(COMMANDS)
    assert set(COMMANDS) == {
        "demo",
        "info",
        "eval",
        "zoo",
        "regenerate",
        "prepare",
        "train",
        "serve",
        "bench",
    }


def test_cli_runs_as_a_module():
    out = subprocess.run(
        [sys.executable, "-m", "dspark.cli", "info", "--json"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert json.loads(out)["cpu"] is True


def test_cli_parse_overrides():
    got = parse_overrides(["a=1", "b=x", "c=[1, 2]", "d=null", "e=a=b", "f="])
    assert got == {"a": 1, "b": "x", "c": [1, 2], "d": None, "e": "a=b", "f": ""}
    for bad in ("novalue", "=3"):
        with pytest.raises(ValueError, match="KEY=VALUE"):
            parse_overrides([bad])


def _eval_settings(argv):
    return construct(build_parser().parse_args(["eval", *argv]), EvalRun, EvalConfig)


def test_cli_eval_settings_file_then_flags_then_set(tmp_path):
    cfg = tmp_path / "eval.json"
    cfg.write_text(
        json.dumps(
            {
                "target": "t",
                "prompts": ["a.jsonl"],
                "output": "o",
                "max_new_tokens": 7,
                "temperature": 0.5,
                "warmup": False,
                "device": "meta",
            }
        )
    )
    run, ev = _eval_settings(
        ["--config", str(cfg), "--max-new-tokens", "9", "--no-resume", "--set", "temperature=0"]
    )
    assert (run.target, run.prompts, run.output, run.device) == ("t", ["a.jsonl"], "o", "meta")
    assert (ev.max_new_tokens, ev.temperature, ev.warmup, ev.resume) == (9, 0, False, False)
    # flags not given leave the file's value and otherwise the EvalConfig default
    assert ev.seed == EvalConfig().seed and ev.progress is True and run.plots is True
    run, ev = _eval_settings(["--target", "t", "--prompts", "p", "--output", "o", "--no-plots"])
    assert run.plots is False and run.drafter == () and ev == EvalConfig()


def test_cli_settings_reject_unknown_and_missing_keys(tmp_path):
    with pytest.raises(ValueError, match=r"unknown keys \['max_new_token'\]"):
        _eval_settings(
            ["--target", "t", "--prompts", "p", "--output", "o", "--set", "max_new_token=3"]
        )
    with pytest.raises(ValueError, match=r"output \(--output\)"):
        _eval_settings(["--target", "t", "--prompts", "p"])
    bad = tmp_path / "bad.json"
    bad.write_text("[1]")
    with pytest.raises(ValueError, match="JSON object"):
        _eval_settings(["--config", str(bad)])
    with pytest.raises(FileNotFoundError, match="--config"):
        _eval_settings(["--config", str(tmp_path / "missing.json")])


def test_cli_train_settings_are_a_train_config(tmp_path):
    cfg = tmp_path / "train.json"
    cfg.write_text(json.dumps({"kind": "dspark", "target": "t", "output_dir": "o", "cache": "c"}))
    args = build_parser().parse_args(["train", "--config", str(cfg), "--set", "max_steps=3"])
    (got,) = construct(args, TrainConfig)
    assert got == TrainConfig(kind="dspark", target="t", output_dir="o", cache="c", max_steps=3)
    args = build_parser().parse_args(["train", "--set", "kind=dspark"])
    with pytest.raises(ValueError, match="output_dir"):
        construct(args, TrainConfig)


def test_cli_regenerate_needs_target_or_url(tmp_path):
    with pytest.raises(ValueError, match="target/url"):
        main(["regenerate", "--data", "d.jsonl", "--out", str(tmp_path / "o.jsonl")])
    with pytest.raises(SystemExit):
        build_parser().parse_args(["regenerate", "--target", "t", "--url", "u"])


def test_cli_zoo_verify_path_is_a_setting(tmp_path):
    with pytest.raises(FileNotFoundError, match="MANIFEST"):
        main(["zoo", "verify", str(tmp_path)])
    with pytest.raises(FileNotFoundError, match="MANIFEST"):
        main(["zoo", "verify", "--set", f"path={tmp_path}"])
