"""The one exception type for bad input: its message is a single line that names the fix.

The CLI prints it as one line and exits non-zero; nodes log it and shut down.
"""


class NsmError(Exception):
    """Bad input or an unusable environment, with a message that says how to fix it."""
