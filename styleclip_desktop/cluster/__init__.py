"""Work split across machines with Ray: batches (`batch --ray`) and the fs3 precompute
(`directions precompute --ray`).

Ray is an optional extra (`pip install 'styleclip-desktop[cluster]'`): nothing outside
this package imports it, and this module imports it only when a cluster is asked for.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from styleclip_desktop.errors import UserError

log = logging.getLogger(__name__)

RAY_VERSION = "2.60.0"  # as pinned in pyproject's [cluster] extra
INSTALL_HINT = "pip install 'styleclip-desktop[cluster]'"


def require_ray() -> Any:
    """The `ray` module, or a one-line error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise UserError(f"running on a Ray cluster needs Ray: {INSTALL_HINT}") from None
    return ray


def connect(address: str | None = "auto", *, num_cpus: int | None = None) -> Any:
    """Join a Ray cluster and return `ray`.

    "auto" (or None) joins the cluster this machine belongs to (RAY_ADDRESS, or one
    started here with `ray start`), and starts a local one when there is none; any other
    value is the address of the cluster's head ("HOST:6379" or "ray://HOST:10001").
    A session already connected is reused. `num_cpus` sizes a cluster started here."""
    ray = require_ray()
    if ray.is_initialized():
        return ray
    # Runs never reach a dashboard or usage-statistics server unasked.
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING,
                              "log_to_driver": log.isEnabledFor(logging.DEBUG)}
    target = None if address in (None, "", "auto") else address
    try:
        if target is None:
            ray.init(num_cpus=num_cpus, **kwargs)
        else:
            ray.init(address=target, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = "a local Ray cluster" if target is None else f"the Ray cluster at {target}"
        raise UserError(f"could not join {where} ({str(exc).splitlines()[0] if str(exc) else exc})") from None
    return ray


def cluster_resources() -> dict[str, float]:
    ray = require_ray()
    return {k: float(v) for k, v in ray.cluster_resources().items()}


def worker_room(ray: Any, cpus_per_worker: int) -> int:
    """How many workers of `cpus_per_worker` cores the cluster's machines can hold at once.

    More would wait for cores that never free up, and the work handed to them with them."""
    return sum(int(n.get("Resources", {}).get("CPU", 0) // cpus_per_worker) for n in ray.nodes() if n.get("Alive"))
