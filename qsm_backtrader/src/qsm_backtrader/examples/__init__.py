"""Examples for the backtrader adapter: a stateful strategy, a price generator, documents."""
