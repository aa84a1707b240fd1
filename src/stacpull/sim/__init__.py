"""A simulated ESA MAAP catalogue: STAC API and data server with fault knobs, on loopback.

Used by ``stacpull demo``, ``stacpull sim serve``, the tests and the benchmarks.
"""

from .catalog import CollectionSpec, SimCatalog, default_collections
from .faults import Faults
from .oidc import OIDCOptions, ScaledClock
from .results import ResultOrder
from .server import SimOptions, SimServer

__all__ = [
    "CollectionSpec",
    "Faults",
    "OIDCOptions",
    "ResultOrder",
    "ScaledClock",
    "SimCatalog",
    "SimOptions",
    "SimServer",
    "default_collections",
]
