"""One error type for user mistakes: the command line prints its message alone, without a traceback."""


class UserError(ValueError):
    """Bad input from the user (missing folder, wrong layout, bad tap, timestep out of range...).

    The message says what is wrong, which file or value, and how to fix it. It subclasses
    ``ValueError`` so library callers can catch it the usual way.
    """
