"""Examples for the vnpy adapter: a made-up minute-bar file, a user engine, documents.

``strategy-manager examples import vnpy`` imports ``strategies.json``; its strategies
replay ``bars-002050.csv`` from the working directory, which ``minute_bars`` writes.
``vnpy-accounts`` (``accounts.json``) puts five strategies on two replay accounts, which
``paper_accounts`` defines (and writes the bar files of).
"""

EXAMPLES = {
    "vnpy": {
        "file": "strategies.json",
        "about": "vnpy's DoubleMaStrategy on the replay gateway, and a user's own engine, on made-up bars",
        "before": "python -m qsm_vnpy.examples.minute_bars bars-002050.csv --days 25 --seed 3",
    },
    "vnpy-accounts": {
        "file": "accounts.json",
        "about": "CTA strategies on two replay accounts (one vnpy engine and connection each), three symbols",
        "before": "python -m qsm_vnpy.examples.paper_accounts",
    },
    "vnpy-ctp": {
        "file": "ctp.json",
        "about": "a CTA strategy on a CTP account (SimNow); needs vnpy_ctp and your account settings",
    },
}
