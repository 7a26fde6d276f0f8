"""Which fields of two resolved suites differ (results/<suite>/suite.yaml, a baseline's stored suite), for
`check` (what changed since the baseline) and `compare` (what differs between two result sets).

A field present on one side only is no difference when the other side's value is the schema's default for it:
a suite written before a field existed ran with the behaviour the field's default names, so a new optional field
resolving to its default is not a change.
"""
from __future__ import annotations

import types
import typing
from dataclasses import dataclass

from pydantic import BaseModel

from .schema import SuiteSpec, VariantSpec

_MISSING = object()
# what makes two suites' numbers incomparable (`compare` refuses without --force): how long they trained, on what
# text, cut into which tokens
TRAINING_LENGTH = ("train.steps", "train.tokens", "train.batch_size", "corpus.seq_len")
CORPUS = "corpus.name"
TOKENIZER = "corpus.tokenizer"


@dataclass(frozen=True)
class Change:
    path: str  # dotted: train.steps, variants.moe8.top_k
    old: object
    new: object

    def __str__(self) -> str:
        return f"{self.path}: {_show(self.old)} -> {_show(self.new)}"


def _show(x) -> str:
    return "(absent)" if x is _MISSING else repr(x)


def _model_of(annotation) -> type[BaseModel] | None:
    """The pydantic model a field's annotation names (Optional[Model] included), else None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return next((m for m in map(_model_of, typing.get_args(annotation)) if m is not None), None)
    return None


def schema_default(path: str):
    """The schema's default for a dotted suite path (variants.<name>.<field> by VariantSpec), or _MISSING."""
    parts = path.split(".")
    if parts[0] == "variants" and len(parts) == 3:
        model, parts = VariantSpec, parts[2:]
    else:
        model = SuiteSpec
    for i, name in enumerate(parts):
        field = model.model_fields.get(name) if model is not None else None
        if field is None:
            return _MISSING
        if i == len(parts) - 1:
            return _MISSING if field.is_required() else field.get_default(call_default_factory=True)
        model = _model_of(field.annotation)
    return _MISSING


def _leaves(d, prefix: str = "") -> dict:
    if isinstance(d, dict) and d:
        return {k: v for key, sub in d.items() for k, v in _leaves(sub, f"{prefix}{key}.").items()}
    return {prefix.rstrip("."): d}


def suite_changes(old: dict, new: dict, skip: tuple[str, ...] = ()) -> list[Change]:
    """Fields (leaves, dotted) whose resolved values differ; `skip` names top-level sections left out."""
    a = _leaves({k: v for k, v in old.items() if k not in skip})
    b = _leaves({k: v for k, v in new.items() if k not in skip})
    out = []
    for path in sorted(set(a) | set(b)):
        x, y = a.get(path, _MISSING), b.get(path, _MISSING)
        x = schema_default(path) if x is _MISSING else x
        y = schema_default(path) if y is _MISSING else y
        if not (_absent(x) and _absent(y)) and x != y:
            out.append(Change(path, x, y))
    return out


def _absent(x) -> bool:
    return x is None or x is _MISSING


def incomparable(changes: list[Change]) -> list[str]:
    """Why two suites' losses and speeds cannot be compared: training length, corpus or tokenizer differ."""
    why = []
    length = [c for c in changes if c.path in TRAINING_LENGTH]
    if length:
        why.append("training length (" + "; ".join(map(str, length)) + ")")
    why += [f"corpus ({c})" for c in changes if c.path == CORPUS]
    why += [f"tokenizer ({c})" for c in changes if c.path == TOKENIZER]
    return why
