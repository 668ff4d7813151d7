"""Errors a user can cause. The CLI prints them as one line, without a stack trace."""


class UserError(Exception):
    """A mistake in the user's input (grid, flags, paths); the message names the field and the fix."""


class GridError(UserError):
    """An invalid grid file."""
