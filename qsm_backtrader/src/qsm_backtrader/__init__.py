"""The backtrader engine adapter for quant-strategy-manager."""
