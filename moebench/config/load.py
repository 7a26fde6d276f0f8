"""Reading a suite file: strict YAML (a duplicate key is an error), presets, and `--set` overrides, each problem a
one-line UserError naming the file, line or flag. What the data means is config/suite.py's business."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from moebench.errors import UserError, did_you_mean, printable

# A suite is a few levels deep (variants.<name>.<field>, claims.<i>.variants.<j>); this much nesting is a
# mistake or an attack, and deeper data would exhaust Python's recursion in copy, pydantic or yaml.dump.
MAX_DEPTH = 32


class StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (plain YAML keeps the last one silently)."""


def _strict_mapping(loader: StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    loader.flatten_mapping(node)  # resolve `<<:` merges first: a merged key may be overridden on purpose
    seen: dict = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (first at line {seen[key] + 1})", key_node.start_mark)
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _strict_mapping)


def read_yaml(path: Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise UserError(f"suite file not found: {path}")
    if not path.is_file():
        raise UserError(f"{path}: not a file (a suite is a YAML file, e.g. suites/quickstart.yaml)")
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=StrictLoader)
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a text file (a suite is a YAML file)") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read it ({e.strerror})") from None
    except RecursionError:
        raise UserError(f"{path}: nested too deeply to read (a suite is a few levels deep)") from None
    except (ValueError, TypeError, OverflowError) as e:  # a value PyYAML's constructors cannot build
        raise UserError(f"{path}: YAML error: {printable(str(e))}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(e, "problem", None) or str(e)
        kind = "YAML error" if isinstance(e, yaml.constructor.ConstructorError) else "YAML syntax error"
        raise UserError(f"{where}: {kind}: {problem}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: a suite must be a YAML mapping (name:, variants:, train:, ...), got {type(data).__name__}")
    check_depth(data, str(path))
    return data


def check_depth(data: Any, origin: str) -> None:
    """Refuse data nested deeper than MAX_DEPTH (iteratively: the check itself must not recurse). A node that
    YAML aliases share is walked again only when reached deeper, so a billion-laughs file costs its nodes x depth."""
    stack, deepest = [(data, 0, "")], {}
    while stack:
        node, depth, where = stack.pop()
        if isinstance(node, (dict, list)):
            if deepest.get(id(node), -1) >= depth:
                continue
            deepest[id(node)] = depth
        if depth > MAX_DEPTH:
            raise UserError(f"{origin}: {printable(where.lstrip('.')) or 'the value'} is nested more than {MAX_DEPTH} "
                            "levels deep (a suite is a few levels deep)")
        if isinstance(node, dict):
            stack.extend((v, depth + 1, f"{where}.{k}") for k, v in node.items())
        elif isinstance(node, list):
            stack.extend((v, depth + 1, f"{where}.{i}") for i, v in enumerate(node))


def set_path(data: dict, key: str, value: Any, origin: str) -> None:
    """data["a"]["b"]["c"] = value for key "a.b.c", creating sections on the way."""
    parts = key.strip().split(".")
    node = data
    for p in parts[:-1]:
        nxt = node.get(p) if isinstance(node, dict) else None
        if nxt is None:
            nxt = node[p] = {}
        if not isinstance(nxt, dict):
            raise UserError(f"{origin} {key}: {p!r} is not a section")
        node = nxt
    node[parts[-1]] = value


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """`--set train.steps=50 --set variants.moe8.num_experts=16`: values are parsed as YAML scalars/lists."""
    data = copy.deepcopy(data)
    for item in overrides or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set {item!r}: expected KEY.PATH=VALUE, e.g. --set train.steps=50")
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            parsed = value
        except (RecursionError, ValueError, TypeError, OverflowError):
            raise UserError(f"--set {printable(key.strip())}: a value PyYAML cannot read (nested too deeply?)") from None
        check_depth(parsed, f"--set {printable(key.strip())}")
        _check_variant_override(data, key.strip(), parsed)
        set_path(data, key, parsed, "--set")
    check_depth(data, "--set")  # a dotted key of thousands of parts nests as deep as its dots
    return data


def _check_variant_override(data: dict, key: str, value: Any) -> None:
    """`--set variants.moe9.top_k=2` with no variant moe9 is a typo, not a new variant; a whole mapping
    (`--set 'variants.moe16={extends: moe8, num_experts: 16}'`) adds one on purpose."""
    parts = key.split(".")
    variants = data.get("variants")
    if parts[0] != "variants" or len(parts) < 2 or not isinstance(variants, dict) or parts[1] in variants:
        return
    if len(parts) == 2 and isinstance(value, dict):
        return
    raise UserError(f"--set {key}: no variant named {parts[1]!r}{did_you_mean(parts[1], variants)}; the suite has "
                    f"{', '.join(map(str, variants))} (to add one, set it whole: --set 'variants.{parts[1]}={{...}}')")


def apply_preset(data: dict, preset: str | None) -> tuple[dict, str | None]:
    """`presets: {cpu: {train.steps: 300}, gpu: {...}}`: named sets of --set overrides. With none chosen the
    first one applies; the chosen preset is appended to the suite name so cpu and gpu results never mix, unless the
    preset sets `name` itself (the quickstart's default keeps results/quickstart and its evidence folder)."""
    data = dict(data)
    presets = data.pop("presets", None)
    if presets is None:
        if preset:
            raise UserError(f"--preset {preset}: this suite defines no presets")
        return data, None
    if not isinstance(presets, dict) or not all(isinstance(v, dict) for v in presets.values()):
        raise UserError("presets: must map a preset name to {dotted.key: value} overrides")
    chosen = preset or next(iter(presets))
    if chosen not in presets:
        raise UserError(f"--preset {chosen}: no such preset{did_you_mean(chosen, presets)}; "
                        f"this suite has {', '.join(presets)}")
    data = copy.deepcopy(data)
    for key, value in presets[chosen].items():
        set_path(data, str(key), value, f"presets.{chosen}:")
    check_depth(data, f"presets.{chosen}")
    if "name" not in presets[chosen]:
        data["name"] = f"{data.get('name', 'suite')}-{chosen}"
    return data, chosen
