"""User-facing errors: anything raised as a StarError is printed as one clear line, never a traceback."""


class StarError(Exception):
    """A problem the user can fix (bad input, missing file, bad option)."""


class AudioError(StarError):
    """The input is not usable audio (not audio, empty, corrupt, silent, too long)."""
