"""A byte-level BPE tokenizer for the zoo, saved in Hugging Face format (tokenizer.json), with the
special tokens the drafters need (end of text, and an unused mask token for DFlash/DSpark)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

__all__ = ["SPECIAL_TOKENS", "load_tokenizer", "train_tokenizer"]

SPECIAL_TOKENS = ["<|endoftext|>", "<|mask|>"]
# The zoo target is a plain LM: a "conversation" is its turns' text, concatenated.
CHAT_TEMPLATE = "{% for m in messages %}{{ m['content'] }}{% endfor %}"


def train_tokenizer(texts: Iterable[str], out_dir: str | Path, vocab_size: int = 4096):
    """Train byte-level BPE on ``texts``; save to ``out_dir``; return a PreTrainedTokenizerFast."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>"
    )
    fast.chat_template = CHAT_TEMPLATE
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(out)
    return fast


def load_tokenizer(path: str | Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path))
