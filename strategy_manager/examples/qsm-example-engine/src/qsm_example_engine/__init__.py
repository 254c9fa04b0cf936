"""A grid-trading engine for quant-strategy-manager, written as a third party would."""
