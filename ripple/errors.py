"""One exception type for every user-facing error.

A :class:`RippleError` carries a single line that names the problem and the fix;
the CLI prints it as ``ripple: error: <message>`` and exits with code 2.
"""


class RippleError(Exception):
    """A bad input or environment problem that the user can fix."""
