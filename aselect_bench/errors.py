"""One error type for user mistakes: the command line prints its message alone, without a traceback."""


class UserError(ValueError):
    """Bad input from the user (missing folder, wrong layout, bad tap, timestep out of range...).

    The message says what is wrong, which file or value, and how to fix it. It subclasses
    ``ValueError`` so library callers can catch it the usual way.
    """


class UnwritableError(UserError, OSError):
    """An output that cannot be written (a read-only folder, a full disk, a file where a folder should be).

    The user can fix it (free space, another folder), so the command line prints it as one line; it is also an
    ``OSError``, so code that falls back to another place on a failed write (a read-only data root) still does.
    """


class CorruptFileError(UserError):
    """A file the suite reads (its own state, a cached record, a user's index or results file) is damaged or
    badly encoded: the message names the file, what is wrong, and what to do (delete it to have it recomputed,
    or restore it)."""
