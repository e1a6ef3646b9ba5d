"""The demo's one kind of failure: a line for the user, not a traceback."""


class DemoError(Exception):
    """A demo failure worth one clear line, not a traceback."""
