"""Placeholder until the bench command lands."""


def add_commands(commands) -> None:
    pass
