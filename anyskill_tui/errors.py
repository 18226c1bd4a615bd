"""The one error type the command line shows to people.

Raise :class:`UserError` (or a subclass) for anything a user can fix: bad input, a missing workspace or
file, a locked or too-new database. The CLI catches it at one place (the root Typer group in
``anyskill_tui.cli``), prints a single red line ``error: <message>`` on stderr and exits with
``exit_code`` (1 unless set). Everything else is a bug and keeps its traceback.

The message should name the thing at fault (a file and line, an entry, an id) and, where there is one,
the fix. It must fit on one line: no trailing period is needed, no newlines.

This module is deliberately tiny and dependency-free so that every layer (store, core, commands, screens)
can import it.
"""

from __future__ import annotations


class UserError(Exception):
    """An error caused by user input or the user's environment, shown as ``error: <message>``.

    Args:
        message: one line, naming what is wrong and how to fix it.
        exit_code: the process exit status the CLI uses (default 1).
    """

    exit_code: int = 1

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if exit_code is not None:
            self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message


class NotFoundError(UserError):
    """A skill, run or other library object that does not exist (an unknown id or text)."""


class DatabaseError(UserError):
    """The library database cannot be used: locked, made by a newer release, corrupt, not a library."""


class DatabaseLockedError(DatabaseError):
    """Another process held the database's write lock longer than the busy timeout."""


class SchemaTooNewError(DatabaseError):
    """The database's ``PRAGMA user_version`` is newer than this release knows."""
