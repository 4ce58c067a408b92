"""The one error type of train/: a problem the user can fix, shown by `train.common.run_main` as one line."""


class UsageError(Exception):
    """A problem the user can fix (no data, a bad path): shown as one line, without a traceback."""
