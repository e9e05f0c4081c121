"""Errors that are the user's to fix: the CLI prints them as one line ``error: ...`` and exits 2."""


class UserError(Exception):
    """A mistake in the user's input (bad path, malformed file, impossible budget).

    The message must name the thing at fault and say what to do about it.
    """


class MissingLutKeysError(UserError):
    """A LUT lacks entries that an architecture or model needs."""

    def __init__(self, lut_name: str, missing: list[str], hint: str):
        self.missing = sorted(set(missing))
        shown = ", ".join(self.missing[:5]) + (f" (+{len(self.missing) - 5} more)" if len(self.missing) > 5 else "")
        super().__init__(f"LUT {lut_name} lacks {len(self.missing)} key(s): {shown}; {hint}")


class SpaceError(UserError, ValueError):
    """A malformed search space or architecture string (a bad token, a factor the space does not allow, a
    space file with a missing or invalid field).

    It is a ``ValueError`` for callers that catch ``ValueError`` (``SearchSpace.contains``, the library's
    earlier contract), and a ``UserError`` so the CLI prints it as one ``error: ...`` line with exit status 2.
    """
