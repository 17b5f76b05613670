"""A dict as TOML (tables, scalars, arrays of scalars): enough for specs and
world configurations given as dicts."""
from __future__ import annotations

import json


def _value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} as TOML: {v!r}")


def dumps(d: dict, prefix: str = "") -> str:
    scalars = [(k, v) for k, v in d.items() if not isinstance(v, dict)]
    tables = [(k, v) for k, v in d.items() if isinstance(v, dict)]
    out = []
    if prefix and scalars:
        out.append(f"[{prefix}]")
    for k, v in scalars:
        out.append(f"{json.dumps(str(k))} = {_value(v)}")
    for k, v in tables:
        name = f"{prefix}.{json.dumps(str(k))}" if prefix else json.dumps(str(k))
        out.append(dumps(v, name))
    return "\n".join(x for x in out if x) + "\n"
