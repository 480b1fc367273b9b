class WvError(Exception):
    """Bad input or an unmet precondition.

    The message is one sentence meant for the user; the CLI prints it without a traceback and
    exits with status 2.
    """
