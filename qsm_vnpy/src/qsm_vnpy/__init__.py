"""The vnpy engine adapter for quant-strategy-manager."""
