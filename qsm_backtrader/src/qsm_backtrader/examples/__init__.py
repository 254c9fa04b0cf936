"""Examples for the backtrader adapter: a stateful strategy, a price generator, documents.

``strategy-manager examples import backtrader`` imports ``strategies.json``.
"""

EXAMPLES = {
    "backtrader": {
        "file": "strategies.json",
        "about": "SmaCrossCooldown and backtrader's SMA_CrossOver on generated prices, resumable",
    },
}
