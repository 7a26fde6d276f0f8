"""pydantic's validation errors as one short line each, prefixed with the field's dotted path:
`variants.moe.capacity_factor: must be finite or 'dropless' (got inf)`."""
from __future__ import annotations

import re
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from moebench.errors import did_you_mean

from .schema import INT_LIMIT

_OPTION = re.compile(r"\A(must be|Input should be) ")
# the location pydantic gives each member of a union (`int | "auto"`): `d_ff.constrained-int`, `d_ff.literal['auto']`
_UNION_MEMBER = re.compile(r"\A((constrained-|lax-|strict-)?(int|float|str|bool)|literal\[.*|function-.*)\Z")


def message(e: dict) -> str:
    """One pydantic error as a short phrase, without the path: pydantic's own words, except that a non-finite
    number reads "must be finite" and the int64 bound "2**63"."""
    t, ctx = e["type"], e.get("ctx") or {}
    if t == "finite_number":
        return "must be finite"
    if t in ("less_than", "less_than_equal") and INT_LIMIT in ctx.values():
        return "must be < 2**63"
    return str(e["msg"]).removeprefix("Value error, ")


def shown(got: Any) -> str:
    if isinstance(got, (dict, list, tuple)):
        return ""
    text = repr(got)
    return f" (got {text if len(text) <= 60 else text[:57] + '...'})"


def _unwrap(tp):
    for arg in typing.get_args(tp) or ():
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return tp


def _model_at(model: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    for part in loc:
        if not (isinstance(model, type) and issubclass(model, BaseModel)) or part not in model.model_fields:
            return None
        model = _unwrap(model.model_fields[part].annotation)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _field_loc(loc: tuple) -> tuple:
    return tuple(p for p in loc if not (isinstance(p, str) and _UNION_MEMBER.match(p)))


def pydantic_problems(err: ValidationError, model: type[BaseModel] | None, prefix: str) -> list[str]:
    """One line per field: the errors of a union's members (`capacity_factor: must be > 0` and `... must be
    'dropless'`) join into one (`must be > 0 or 'dropless'`)."""
    errors = err.errors()
    groups: dict[tuple, list[dict]] = {}
    for e in errors:
        groups.setdefault(_field_loc(tuple(e["loc"])), []).append(e)
    out = []
    for e in errors:
        loc = tuple(e["loc"])
        group = groups.get(_field_loc(loc), [e])
        if len(group) > 1 and e is not group[0]:
            continue  # said with the group's first error
        if len(group) > 1:
            loc = _field_loc(loc)
        path = ".".join(str(p) for p in (prefix.split(".") if prefix else []) + list(loc))
        if e["type"] == "extra_forbidden":
            parent = _model_at(model, loc[:-1]) if model is not None else None
            hint = did_you_mean(loc[-1], parent.model_fields) if parent else ""
            out.append(f"{path}: unknown key{hint}")
        elif e["type"] == "missing":
            out.append(f"{path}: required")
        else:
            phrases = list(dict.fromkeys(message(g).split(",")[0] for g in group) if len(group) > 1 else [message(e)])
            text = " or ".join([phrases[0]] + [_OPTION.sub("", p) for p in phrases[1:]])
            out.append(f"{path}: {text}{shown(e.get('input'))}")
    return out


def validate_model(model: type[BaseModel], data: Any, prefix: str, problems: list[str]):
    try:
        return model.model_validate(data)
    except ValidationError as err:
        problems.extend(pydantic_problems(err, model, prefix))
        return None
