"""JSON files any parser reads: non-finite numbers are written as the strings "nan", "inf", "-inf".

Python's `json.dumps` writes float('nan') as a bare `NaN`, which is not JSON (jq, JavaScript's
JSON.parse, pandas' strict readers and `json.loads(..., parse_constant=...)` refuse it). A run that
went non-finite still writes its metrics: `metrics.json`, `curves.jsonl`, `outcome.json`,
`lr_find.json`, the landscape lab's `run.json` go through `dumps`, which refuses (allow_nan=False)
anything it did not convert. Strings, not null: the value stays distinguishable (nan vs inf vs a
metric never logged) and `float()` reads it back (`number`).
"""

import json
import math

NONFINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def finite(value):
    """`value` with every non-finite float (nested in dicts, lists, tuples) as "nan", "inf" or "-inf"."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def dumps(value, **kwargs) -> str:
    """`json.dumps` of `finite(value)`; raises ValueError rather than write a bare NaN."""
    return json.dumps(finite(value), allow_nan=False, **kwargs)


def number(value):
    """A value read back: "nan", "inf", "-inf" as floats, anything else as it is."""
    return NONFINITE.get(value, value) if isinstance(value, str) else value
