"""A suite's `sweep:` section: every variant at every named size. Each size is the suite with the size's `base`
overrides applied (so variants inherit them and `auto` widths are re-solved per size by the plan), validated
like any suite; its problems are reported with the size's path."""
from __future__ import annotations

import copy
from typing import Callable

from moebench.errors import SuiteValidationError

from .schema import NAME

SIZE_NAME = NAME  # no '@': it separates variant and size in a run key


def size_data(data: dict, size) -> dict:
    """The suite dict of one size: base overrides applied, the size's fixed step budget if it has one, no
    sweep and no claims (claims are the whole suite's)."""
    d = copy.deepcopy({k: v for k, v in data.items() if k not in ("sweep", "claims")})
    d["base"] = {**(d.get("base") or {}), **size.base}
    if size.steps is not None:
        d["train"] = {**{k: v for k, v in (d.get("train") or {}).items() if k != "tokens"}, "steps": size.steps}
    return d


def build_sizes(data: dict, spec, build: Callable, problems: list[str]) -> dict:
    """name -> the resolved Suite of each size (empty without a sweep); problems are appended, each once."""
    if spec.sweep is None:
        problems.extend(f"claims.{i}.kind: compute_multiplier needs a sweep: section (sizes to fit over)"
                        for i, c in enumerate(spec.claims)
                        if isinstance(c, dict) and c.get("kind") == "compute_multiplier")
        return {}
    out = {}
    known = set(problems)
    for name, size in spec.sweep.sizes.items():
        p = f"sweep.sizes.{name}"
        if not SIZE_NAME.match(str(name)):
            problems.append(f"sweep.sizes: {str(name)!r} is not a size name: letters, digits, '_' or '-', starting "
                            "with a letter or digit")
            continue
        if size.steps is not None and size.tokens_per_param is not None:
            problems.append(f"{p}: set at most one of steps or tokens_per_param")
        try:
            out[name] = build(size_data(data, size))
        except SuiteValidationError as err:
            # a problem the suite itself has (shared by every size) is reported once, without the size
            problems.extend(f"{p}: {m}" for m in err.problems if m not in known)
    return out


def claim_names(variants, sizes) -> list[str]:
    """Names a claim may compare: the variants, and in a sweep each variant at one size (`switch8@large`)."""
    return list(variants) + [f"{v}@{s}" for s in (sizes or ()) for v in variants]

