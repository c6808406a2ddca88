"""save_pretrained / from_pretrained: round trip, shared weights, and target mismatches."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from dspark.models import DFlashDrafter, Drafter, Eagle3Drafter, build_drafter, load_drafter
from tests._tiny import tiny_qwen3


@pytest.mark.parametrize("kind", ["dspark", "dflash", "eagle3"])
def test_checkpoint_round_trip(tmp_path, qwen3_target, kind):
    extra = {"markov_rank": 8, "head_type": "gated"} if kind == "dspark" else {}
    d = build_drafter(kind, qwen3_target, num_layers=1, block_size=3, **extra)
    d.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "checksums.json",
        "config.json",
        "model.safetensors",
    ]
    stored = load_file(str(tmp_path / "model.safetensors"))
    assert "embed_tokens.weight" not in stored
    assert "lm_head.weight" not in stored
    e = load_drafter(tmp_path, qwen3_target)
    assert type(e) is type(d)
    assert e.config == d.config
    ours, theirs = d.state_dict(), e.state_dict()
    assert sorted(ours) == sorted(theirs)
    for k, a in ours.items():
        assert torch.equal(a, theirs[k]), k
    # Same weights, same drafts.
    ids = torch.randint(0, 256, (1, 6))
    with torch.no_grad():
        feats = torch.cat(
            [
                qwen3_target(ids, output_hidden_states=True).hidden_states[i + 1]
                for i in d.config.feature_layers
            ],
            -1,
        )
    outs = []
    for m in (d, e):
        st = m.new_state(1)
        m.commit(st, feats, torch.roll(ids, -1, 1), torch.tensor([6]))
        outs.append(m.propose(st, ids[:, -1], temperature=torch.zeros(1)).draft_logits)
    torch.testing.assert_close(outs[0], outs[1])


@pytest.mark.parametrize("tied", [False, True])
def test_checkpoint_include_shared(tmp_path, qwen3_target, tied):
    target = qwen3_target
    if tied:  # small Qwen3 checkpoints tie the LM head to the embedding (one tensor)
        cfg = qwen3_target.config.to_dict() | {"tie_word_embeddings": True}
        target = type(qwen3_target)(type(qwen3_target.config)(**cfg)).eval()
        assert target.lm_head.weight.data_ptr() == target.model.embed_tokens.weight.data_ptr()
    d = build_drafter("dflash", target, num_layers=1)
    d.save_pretrained(tmp_path, include_shared=True)
    stored = load_file(str(tmp_path / "model.safetensors"))
    assert torch.equal(stored["lm_head.weight"], target.lm_head.weight.detach())
    assert torch.equal(stored["embed_tokens.weight"], target.model.embed_tokens.weight.detach())
    assert isinstance(DFlashDrafter.from_pretrained(tmp_path, target), DFlashDrafter)


@pytest.mark.parametrize(
    ("other", "match"),
    [
        ({"vocab": 320}, "vocab_size"),
        ({"hidden": 96}, "hidden_size"),
        ({"layers": 3}, "num_hidden_layers"),
    ],
)
def test_checkpoint_rejects_other_target(tmp_path, qwen3_target, other, match):
    build_drafter("dspark", qwen3_target, num_layers=1, markov_rank=8).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=match):
        Drafter.from_pretrained(tmp_path, tiny_qwen3(**other))


def test_checkpoint_rejects_bad_files(tmp_path, qwen3_target):
    with pytest.raises(FileNotFoundError, match=r"config\.json"):
        Drafter.from_pretrained(tmp_path, qwen3_target)
    build_drafter("dflash", qwen3_target, num_layers=1).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="not 'eagle3'"):
        Eagle3Drafter.from_pretrained(tmp_path, qwen3_target)
    # Copies: some safetensors releases memory-map the file that save_file then overwrites.
    tensors = {k: v.clone() for k, v in load_file(str(tmp_path / "model.safetensors")).items()}
    tensors["fc.weight"] = tensors["fc.weight"][:, :10].contiguous()
    save_file(tensors, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match=r"fc.weight"):
        Drafter.from_pretrained(tmp_path, qwen3_target, verify=False)
    del tensors["fc.weight"]
    save_file(tensors, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match="missing"):
        Drafter.from_pretrained(tmp_path, qwen3_target, verify=False)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["feature_layers"] = [0, 3]
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="feature_layers"):
        Drafter.from_pretrained(tmp_path, qwen3_target, verify=False)


def test_checkpoint_write_is_atomic(tmp_path, qwen3_target, monkeypatch):
    """A failing write leaves the previous checkpoint intact and no temporary files."""
    d = build_drafter("dflash", qwen3_target, num_layers=1)
    d.save_pretrained(tmp_path)
    before = (tmp_path / "model.safetensors").read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("safetensors.torch.save_file", boom)
    with torch.no_grad():
        d.fc.weight.add_(1.0)
    with pytest.raises(OSError, match="disk full"):
        d.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "checksums.json",
        "config.json",
        "model.safetensors",
    ]


def test_load_target_from_local_directory(tmp_path, qwen3_target):
    """The real-checkpoint path: a target saved to disk, reloaded offline, drafts end to end."""
    from dspark.models import load_target

    qwen3_target.save_pretrained(tmp_path / "target")
    target = load_target(tmp_path / "target")
    ids = torch.randint(0, 256, (1, 5))
    torch.testing.assert_close(target(ids).logits, qwen3_target(ids).logits)
    drafter = build_drafter("dspark", target, num_layers=1, markov_rank=8)
    drafter.save_pretrained(tmp_path / "drafter")
    assert isinstance(load_drafter(tmp_path / "drafter", target), type(drafter))
    with pytest.raises(FileNotFoundError, match=r"config\.json"):
        load_target(tmp_path / "nothing")


def test_checkpoint_overwrite_keeps_other_files_outside_the_checksums(tmp_path, qwen3_target):
    """Files that are not part of the checkpoint survive a re-save (hard-linked into the new
    directory) and are not checksummed, so rewriting them later does not fail the load."""
    d = build_drafter("dflash", qwen3_target, num_layers=1)
    d.save_pretrained(tmp_path / "c")
    (tmp_path / "c" / "train_record.json").write_text("{}")
    (tmp_path / "c" / "notes").mkdir()
    (tmp_path / "c" / "notes" / "a.txt").write_text("kept")
    d.save_pretrained(tmp_path / "c")
    assert (tmp_path / "c" / "notes" / "a.txt").read_text() == "kept"
    (tmp_path / "c" / "train_record.json").write_text('{"steps": 3}')
    assert Drafter.from_pretrained(tmp_path / "c", qwen3_target).config == d.config
    listed = json.loads((tmp_path / "c" / "checksums.json").read_text())["files"]
    assert sorted(listed) == ["config.json", "model.safetensors"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]
