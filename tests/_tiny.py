"""Tiny randomly initialised Hugging Face targets for tests (built in-process, no downloads)."""

from __future__ import annotations

import torch
from transformers import LlamaConfig, LlamaForCausalLM, Qwen3Config, Qwen3ForCausalLM

from dspark.models import Drafter, DrafterConfig, Proposal
from dspark.models.sampling import process_logits, sample_processed


def _shape(vocab: int, hidden: int, layers: int) -> dict:
    """Config fields the tiny test models share: 4 heads (2 KV heads) of dim 16, MLP 128."""
    return {
        "vocab_size": vocab,
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 64,
        "intermediate_size": 128,
        "max_position_embeddings": 512,
        "tie_word_embeddings": False,
    }


def tiny_qwen3(
    vocab: int = 256,
    layers: int = 4,
    hidden: int = 64,
    seed: int = 0,
    logit_scale: float = 1.0,
    dtype: torch.dtype = torch.float32,
) -> Qwen3ForCausalLM:
    """A Qwen3 causal LM: 4 heads (2 KV heads) of dim 16, MLP 128, eager-free (sdpa) attention.

    ``logit_scale`` multiplies the LM head so the random model is peaked rather than uniform
    (a uniform target makes every drafter look perfect).
    """
    torch.manual_seed(seed)
    cfg = Qwen3Config(**_shape(vocab, hidden, layers), eos_token_id=None, pad_token_id=None)
    model = Qwen3ForCausalLM(cfg).eval().to(dtype)
    with torch.no_grad():
        model.lm_head.weight.mul_(logit_scale)
    return model


def tiny_llama(
    vocab: int = 256, layers: int = 3, hidden: int = 64, seed: int = 0
) -> LlamaForCausalLM:
    """A Llama causal LM (no q/k norm): the second family through the same drafter code."""
    torch.manual_seed(seed)
    cfg = LlamaConfig(**_shape(vocab, hidden, layers))
    return LlamaForCausalLM(cfg).eval()


def greedy_reference(target, input_ids: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
    """The target's own greedy decoding by full recomputation each step (no cache, obviously
    correct): returns [B, L + max_new_tokens]."""
    seq = input_ids.clone()
    with torch.no_grad():
        for _ in range(max_new_tokens):
            nxt = target(seq).logits[:, -1].argmax(-1, keepdim=True)
            seq = torch.cat([seq, nxt], dim=1)
    return seq


class OracleDrafter(Drafter):
    """Test drafter that asks the target itself (no cache): drafts are drawn from
    ``softmax(scale * target_logits)`` (processed like the target), so acceptance is high but
    q != p. With ``corrupt > 0`` each draft is replaced by a random token with that probability
    (only valid for greedy verification, where q is not used).

    Set ``first_tokens`` (the first real prompt token of each request) before generating.
    """

    def __init__(self, target, block_size: int = 4, scale: float = 0.5, corrupt: float = 0.0):
        cfg = DrafterConfig.for_target("dflash", target.config, num_layers=1, block_size=block_size)
        super().__init__(cfg, target)
        self.anchor_param = torch.nn.Parameter(torch.zeros(1))  # gives the drafter a device
        self._target = [target]  # a list: not registered as a submodule
        self.scale, self.corrupt = scale, corrupt
        self.first_tokens: list[int] = []

    def new_state(self, batch):
        return {"hist": [[int(t)] for t in self.first_tokens]}

    def select(self, state, indices):
        state["hist"] = [state["hist"][i] for i in indices.tolist()]

    def commit(self, state, features, next_tokens, counts):
        for b, n in enumerate(counts.tolist()):
            state["hist"][b].extend(next_tokens[b, :n].tolist())

    @torch.no_grad()
    def propose(
        self, state, anchor, *, temperature, top_k=None, top_p=None, generator=None, num_tokens=None
    ):
        hist = [list(h) for h in state["hist"]]
        toks, logits = [], []
        for _ in range(num_tokens or self.config.block_size):
            lens = torch.tensor([len(h) for h in hist])
            ids = torch.zeros(len(hist), int(lens.max()), dtype=torch.int64)
            mask = torch.zeros_like(ids)
            for b, h in enumerate(hist):
                ids[b, : len(h)] = torch.tensor(h)
                mask[b, : len(h)] = 1
            out = self._target[0](ids, attention_mask=mask).logits
            last = out[torch.arange(len(hist)), lens - 1].float() * self.scale
            proc = process_logits(last, temperature, top_k, top_p)
            tok = sample_processed(proc, temperature <= 0, generator=generator)
            if self.corrupt > 0:
                flip = torch.rand(tok.shape, generator=generator) < self.corrupt
                noise = torch.randint(0, proc.shape[1], tok.shape, generator=generator)
                tok = torch.where(flip, noise, tok)
            for b in range(len(hist)):
                hist[b].append(int(tok[b]))
            toks.append(tok)
            logits.append(proc)
        return Proposal(torch.stack(toks, 1), torch.stack(logits, 1), None)


def tiny_gemma3(
    vocab: int = 256, layers: int = 4, hidden: int = 64, sliding_window: int = 512, seed: int = 0
):
    """A Gemma3 text model (scaled embedding, (1 + w) norms, GELU-tanh MLP, sliding layers)."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    torch.manual_seed(seed)
    cfg = Gemma3TextConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=64,
        intermediate_size=128,
        max_position_embeddings=512,
        sliding_window=sliding_window,
    )
    model = Gemma3ForCausalLM(cfg).eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(20.0)
    return model


def tiny_zoo_target_config(**overrides):
    """A toy :class:`dspark.zoo.TargetTrainConfig` (3-layer d=32 Qwen3, 4 steps) for zoo tests."""
    from dspark.zoo.target_lm import TargetTrainConfig

    fields = {
        "vocab_size": 300,
        "hidden_size": 32,
        "num_layers": 3,
        "num_heads": 2,
        "num_kv_heads": 1,
        "head_dim": 16,
        "intermediate_size": 64,
        "seq_len": 32,
        "batch_size": 4,
        "warmup": 2,
        "total_steps": 4,
        "checkpoint_every": 2,
    }
    return TargetTrainConfig(**{**fields, **overrides})


CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def tiny_tokenizer():
    """Byte-level tokenizer: 256 byte tokens + <|im_start|>, <|im_end|> (ids 256, 257)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {c: i for i, c in enumerate(sorted(alphabet))}
    tk = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tk.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk)
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tok.eos_token = "<|im_end|>"
    tok.chat_template = CHAT_TEMPLATE
    return tok


def padded_prompts():
    """Three prompts of lengths 7, 4, 2, left-padded to 7."""
    ids = torch.randint(0, 256, (3, 7))
    mask = torch.ones(3, 7, dtype=torch.long)
    mask[1, :3] = 0
    mask[2, :5] = 0
    ids[mask == 0] = 0
    return ids, mask
