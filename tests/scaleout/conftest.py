"""Without Ray the Ray tests are not collected. ``make test`` leaves them out anyway
(``-m "not ray"``); ``make test-ray`` installs Ray first, and would fail here finding
no test rather than pass having skipped them."""

from __future__ import annotations

import importlib.util


def _have_ray() -> bool:
    try:
        return importlib.util.find_spec("ray") is not None
    except (ImportError, ValueError):  # ValueError: sys.modules["ray"] is None
        return False


collect_ignore = [] if _have_ray() else ["test_ray_faults.py"]
