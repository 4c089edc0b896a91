"""Errors a user can cause, as opposed to bugs in cnnzoo.

The CLI turns a `UserError` into one sentence on stderr and exit code 2; anything else
is a bug and keeps its traceback. It subclasses `ValueError` so Python callers can catch
it the way they catch Keras' own argument errors.
"""


class UserError(ValueError):
    """A problem with the user's input: its message says what is wrong and how to fix it."""
