class WvError(Exception):
    """Bad input or an unmet precondition.

    The message is one sentence meant for the user; the CLI prints it without a traceback and
    exits with status 2.
    """


def first_line(error: Exception, width: int = 200) -> str:
    """The first line of an exception's message (its type when it has none), for a one-sentence error."""
    lines = str(error).strip().splitlines()
    return lines[0][:width] if lines else type(error).__name__


def damaged_root(path: object, error: Exception) -> WvError:
    """A table of a dataset root that cannot be read, as the one sentence to raise."""
    return WvError(f"{path} cannot be read ({first_line(error)}); the root is damaged: run `wv shard verify`, or rebuild it")
