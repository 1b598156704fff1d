"""Keep an embedded, single-machine Ray on the loopback interface.

Ray resolves a node address of 127.0.0.1 to the machine's outward address
unless its cluster mode is off, and then binds its GCS, raylet, worker and
dashboard servers there. The switch is read once, when ``ray`` is imported, so
it has to be set before that; it is left alone when Ray is already imported or
when a cluster address is given (a driver joining a cluster needs its real IP).
"""

from __future__ import annotations

import os
import sys
from typing import Optional

CLUSTER_MODE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # Ray's name; on Linux it turns cluster mode off too


def keep_embedded_ray_on_loopback(address: Optional[str]) -> None:
    if address is None and "ray" not in sys.modules:
        os.environ.setdefault(CLUSTER_MODE_ENV, "0")
