"""Errors a user can cause (bad params, bad input files).

Stages catch `UserError` at the top (see `synthtune.core.cli.run_stage`) and print its message as one
line without a traceback; anything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """A problem the user can fix; the message names the file/line or params key."""


class ParamsError(UserError):
    """params.yaml is invalid: unknown key, wrong type, bad value."""


class InputError(UserError):
    """An input file is missing, empty or unreadable."""
