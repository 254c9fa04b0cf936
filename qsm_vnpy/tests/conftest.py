"""Fixtures for the vnpy adapter's tests; they and the helpers live in vn_support.

Test modules import helpers from ``vn_support``, never from ``conftest``: this
folder and qsm_backtrader's both have a module named ``conftest``.
"""

from vn_support import (  # noqa: F401
    bars_csv,
    driver,
    gapped_csv,
    gapped_driver,
    oracle,
    stop_oracles,
    vnpy_home,
)
