"""quant-strategy-manager: run many live trading strategies on any execution engine."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("quant-strategy-manager")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
