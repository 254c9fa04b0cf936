"""Examples for the vnpy adapter: a made-up minute-bar file and a user engine."""
