"""Extraction presets: named, complete preprocessing recipes that reproduce a source's features.

A preset is a JSON file in this folder (the registry, like open_clip's model configs):

    {"name", "description", "source": the file and lines it reproduces,
     "model", "pretrained": the encoder the source used (a --model given on the command line
                            replaces both, e.g. to get the same grids from another backbone),
     "grid": whether the source's features are the grid,
     "preprocess": {"mode", ...}: every value `images.Preprocessor` takes}

`clipfeat extract --preset NAME` applies one; the store records its name and every value in
`preprocess`, so its store_id differs from any other preprocessing. Adding a preset is adding
a file here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from clipfeat.common import ClipfeatError

__all__ = ["PRESETS", "Preset", "get_preset", "load_presets"]

_PREPROCESS_KEYS = {"mode", "shorter_side", "max_side", "height", "width", "interpolation", "mean", "std", "size"}


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    source: str
    model: str
    pretrained: str | None
    grid: bool
    preprocess: dict[str, Any] = field(default_factory=dict)


def _parse(name: str, d: dict) -> Preset:
    missing = {"name", "description", "source", "model", "preprocess"} - d.keys()
    if missing:
        raise ClipfeatError(f"preset file {name}.json lacks {', '.join(sorted(missing))}")
    if d["name"] != name:
        raise ClipfeatError(f"preset file {name}.json is named {d['name']!r} inside; the two must agree")
    unknown = set(d["preprocess"]) - _PREPROCESS_KEYS
    if unknown:
        raise ClipfeatError(f"preset {name}: unknown preprocess keys {sorted(unknown)}; known: {sorted(_PREPROCESS_KEYS)}")
    pre = {k: tuple(v) if isinstance(v, list) else v for k, v in d["preprocess"].items()}
    return Preset(name=name, description=d["description"], source=d["source"], model=d["model"],
                  pretrained=d.get("pretrained"), grid=bool(d.get("grid", True)), preprocess=pre)


def load_presets() -> dict[str, Preset]:
    """name -> Preset, from the JSON files shipped in this package."""
    out = {}
    for f in resources.files(__package__).iterdir():
        if f.name.endswith(".json"):
            name = f.name[: -len(".json")]
            out[name] = _parse(name, json.loads(f.read_text()))
    return dict(sorted(out.items()))


PRESETS: dict[str, Preset] = load_presets()


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ClipfeatError(f"unknown preset {name!r}; `clipfeat extract --list-presets` lists them ({', '.join(PRESETS)})") from None
