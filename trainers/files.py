"""Reading the JSON files the metrics take (results, annotations, splits): a path or the
already-loaded object, with a one-line error naming the file when it is not JSON. No torch
here, so `clipfeat eval …` starts fast."""

from __future__ import annotations

import json
import os
from typing import Any

__all__ = ["load_json"]


def load_json(source: Any, what: str, expected: str) -> Any:
    """`source` parsed if it is a path (str / PathLike), else returned as is.
    what: "results", "annotations", …; expected: what the file should hold (for the error)."""
    if not isinstance(source, (str, os.PathLike)):
        return source
    try:
        with open(source, encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{what} file {os.fspath(source)!r} is not valid JSON ({e}); {expected}") from None
