"""Examples shipped with the core (``strategy-manager examples``).

``demo.json``: strategies of the built-in ``demo`` engine. ``qsm-example-engine/``: a
complete third-party engine adapter to copy (``strategy-manager examples engine DIR``).
"""

EXAMPLES = {
    "demo": {
        "file": "demo.json",
        "about": "the built-in demo engine on Shanghai, Shenzhen, Hong Kong, New York and crypto "
        "symbols, and one strategy of an engine that is not installed",
    },
}
