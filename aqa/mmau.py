"""Placeholder until the mmau command lands."""


def add_commands(commands) -> None:
    pass
