"""``dspark regenerate``, ``dspark prepare`` and ``dspark train --config`` end to end."""

from __future__ import annotations

import json

import pytest

from dspark.cli import main
from dspark.training import TargetCache


def test_regenerate_prepare_train(target_dir, data_file, tmp_path, capsys):
    gen = tmp_path / "gen.jsonl"
    main(
        [
            "regenerate",
            "--target",
            str(target_dir),
            "--data",
            str(data_file),
            "--out",
            str(gen),
            "--max-new-tokens",
            "6",
            "--batch-size",
            "4",
        ]
    )
    assert len(gen.read_text().splitlines()) == 8
    capsys.readouterr()
    main(
        [
            "prepare",
            "--target",
            str(target_dir),
            "--data",
            str(data_file),
            "--out",
            str(tmp_path / "est"),
            "--estimate",
            "--feature-dtype",
            "fp8",
        ]
    )
    est = json.loads(capsys.readouterr().out)
    cache = tmp_path / "cache"
    main(
        [
            "prepare",
            "--target",
            str(target_dir),
            "--data",
            str(data_file),
            "--out",
            str(cache),
            "--feature-layers",
            "0",
            "1",
            "2",
            "--min-loss-tokens",
            "2",
            "--feature-dtype",
            "fp8",
        ]
    )
    got = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert got["num_tokens"] == est["tokens"]
    assert est["bytes_per_token"] <= got["bytes_per_token"] < 1.3 * est["bytes_per_token"]
    assert len(TargetCache(cache, verify=True)) == 8
    cfg = tmp_path / "cfg.json"
    cfg.write_text(
        json.dumps(
            {
                "kind": "dspark",
                "target": str(target_dir),
                "cache": str(cache),
                "output_dir": str(tmp_path / "run"),
                "global_batch": 4,
                "micro_batch": 2,
                "num_anchors": 8,
                "progress": False,
                "drafter": {
                    "num_layers": 1,
                    "markov_rank": 8,
                    "block_size": 3,
                    "feature_layers": [0, 1, 2],
                },
            }
        )
    )
    main(["train", "--config", str(cfg), "--set", "max_steps=2"])
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last["step"] == 2
    log = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert {"loss", "ce", "tv", "conf", "accept", "tau", "tokens_per_s"} <= set(log[-1])
    with pytest.raises(ValueError, match="KEY=VALUE"):
        main(["train", "--config", str(cfg), "--set", "max_steps"])
