"""The base of every error a user can act on. Each message is one line that says what to do.

The root CLI turns every `ClipfeatError` into `Error: <message>` and exit code 2 (or the
error's own `exit_code`), without a traceback; anything else is a bug and keeps its traceback.
Every layer raises subclasses of it: `features` (store errors), `manifests` (`ManifestError`),
`pipeline` (`ImageError`, `PanoramaError`), so one `except ClipfeatError` catches them all.
"""

from __future__ import annotations

__all__ = ["ClipfeatError"]


class ClipfeatError(Exception):
    """Base class: a problem with the user's input or environment, not a bug."""
