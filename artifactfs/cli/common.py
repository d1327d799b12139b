"""What the commands in modules of their own share with ``cli/main.py``: its handling of user
errors and its ``Api``, reached when a command runs.

``main.py`` imports these modules to register their commands, so they cannot import it at
their top (the import would find it half made); the two functions here look it up when
called instead, so that every command turns user errors into one ``error:`` line the same
way, whatever ``main.user_errors`` comes to do.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from artifactfs.sdk import Api

__all__ = ["confirm", "make_api", "user_errors"]

F = TypeVar("F", bound=Callable[..., Any])


def user_errors(func: F) -> F:
    """``main.user_errors``: the errors a user can cause become ``error: ...`` and exit 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from artifactfs.cli.main import user_errors as handled

        return handled(func)(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def make_api() -> Api:
    """The ``Api`` every command uses (configured from the environment, progress bars on a
    terminal)."""
    from artifactfs.cli.main import make_api as made

    return made()


def confirm(question: str, *, yes: bool, what: str) -> None:
    """Ask ``question`` on a terminal unless ``yes``; exit 1 when the answer is no. Not on a
    terminal (a script, a pipe), nobody can answer, so the command is refused with what to
    pass instead of waiting for input that never comes or taking silence as consent."""
    from artifactfs.cli.output import fail

    if yes:
        return
    if not sys.stdin.isatty():
        fail(f"{what} asks for confirmation, and stdin is not a terminal: pass --yes")
    if not click.confirm(question, default=False, err=True):
        fail("nothing done")
