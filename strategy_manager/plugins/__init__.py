"""Engines shipped with the core, registered through entry points like anyone's."""
