"""clipfeat.common: conventions every layer shares (the error base, R2R view geometry, the
connectivity reader). A leaf: imports nothing of clipfeat.

    from clipfeat.common import ClipfeatError, VIEWS, view_angles, read_connectivity

Standard library only, so that any layer (and `clipfeat --help`) may import it for nothing.
"""

from .errors import ClipfeatError
from .r2r import (
    HEADING_COUNT, VFOV, VFOV_DEG, VIEW_ELEVATIONS, VIEW_HEADINGS, VIEW_HEIGHT, VIEW_WIDTH, VIEWS, ConnectivityError,
    Viewpoint, read_connectivity, view_angles,
)

__all__ = [
    "ClipfeatError",
    "VIEWS", "HEADING_COUNT", "VIEW_WIDTH", "VIEW_HEIGHT", "VFOV_DEG", "VFOV", "VIEW_HEADINGS", "VIEW_ELEVATIONS",
    "view_angles", "ConnectivityError", "Viewpoint", "read_connectivity",
]
