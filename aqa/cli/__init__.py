"""The command line (`aqa`, `python -m aqa`): `aqa.cli.main.main` parses the arguments and runs one command; each
command module only wires its arguments to library calls, and imports torch (seconds) only when it runs."""
