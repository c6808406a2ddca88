"""``dspark eval`` end to end: saved tiny target and drafter directories, report on disk."""

from __future__ import annotations

import json

import pytest

from dspark.cli import main
from dspark.models import build_drafter


def test_cli_eval_writes_report(target, prompt_file, tmp_path, capsys):
    tdir, ddir, out = tmp_path / "target", tmp_path / "drafter", tmp_path / "out"
    target.save_pretrained(tdir)
    build_drafter("dspark", target, num_layers=1, markov_rank=16, block_size=3).save_pretrained(
        ddir
    )
    rc = main(
        [
            "eval",
            "--target",
            str(tdir),
            "--drafter",
            f"ds={ddir}",
            "--prompts",
            str(prompt_file),
            "--output",
            str(out),
            "--max-new-tokens",
            "5",
            "--batch-size",
            "2",
            "--no-progress",
            "--no-plots",
            "--prompt-lookup",
            "3",
            "--thresholds",
            "0",
            "0.5",
        ]
    )
    assert rc == 0
    stdout = capsys.readouterr().out
    assert "report.md" in stdout
    rep = json.loads((out / "report.json").read_text())
    methods = [r["method"] for r in rep["table"]]
    assert methods == ["target", "ds", "hf_prompt_lookup"]
    assert len(rep["results"]["bench"]["ds"]["sweep"]) == 2


def test_cli_eval_bad_drafter_spec(target, prompt_file, tmp_path):
    tdir = tmp_path / "target"
    target.save_pretrained(tdir)
    with pytest.raises(SystemExit, match="NAME=DIR"):
        main(
            [
                "eval",
                "--target",
                str(tdir),
                "--drafter",
                "nodir",
                "--prompts",
                str(prompt_file),
                "--output",
                str(tmp_path / "o"),
            ]
        )


def test_cli_eval_reads_a_config_file(target, prompt_file, tmp_path, capsys):
    tdir, ddir, out = tmp_path / "target", tmp_path / "drafter", tmp_path / "out"
    target.save_pretrained(tdir)
    build_drafter("dspark", target, num_layers=1, markov_rank=16, block_size=3).save_pretrained(
        ddir
    )
    cfg = tmp_path / "eval.json"
    cfg.write_text(
        json.dumps(
            {
                "target": str(tdir),
                "drafter": {"ds": str(ddir)},
                "prompts": [str(prompt_file)],
                "output": str(out),
                "max_new_tokens": 4,
                "baseline": False,
                "plots": False,
                "progress": False,
                "thresholds": [0.5],
            }
        )
    )
    assert main(["eval", "--config", str(cfg), "--set", "warmup=false"]) == 0
    capsys.readouterr()
    rep = json.loads((out / "report.json").read_text())
    assert [r["method"] for r in rep["table"]] == ["ds"]
    assert len(rep["results"]["bench"]["ds"]["sweep"]) == 1
    assert rep["config"]["max_new_tokens"] == 4 and rep["config"]["warmup"] is False
