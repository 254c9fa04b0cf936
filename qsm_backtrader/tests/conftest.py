"""Fixtures for the backtrader adapter's tests; they and the helpers live in bt_support.

Test modules import helpers from ``bt_support``, never from ``conftest``: this
folder and qsm_vnpy's both have a module named ``conftest``.
"""

from bt_support import driver, prices_csv, sma_oracle  # noqa: F401
