"""What every command module shares: the API a command works through, and the turning of a
user's errors into one line. Apart from cli/main.py, which imports every command module to
register it, so that those modules can import these at load time."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from artifactfs.cli.output import fail, progress_factory
from artifactfs.config import Config
from artifactfs.core.errors import ArtifactFSError

if TYPE_CHECKING:
    from artifactfs.sdk import Api

__all__ = ["confirm", "make_api", "user_errors"]

F = TypeVar("F", bound=Callable[..., Any])


def user_errors(func: F) -> F:
    """Turn the errors a user can cause into ``error: ...`` and exit 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except BrokenPipeError:
            raise  # the reader of our output left (``| head``): click exits quietly
        except (ArtifactFSError, ValueError, NotImplementedError, OSError) as exc:
            detail = str(exc) or type(exc).__name__
            if isinstance(exc, OSError) and exc.filename:
                detail = f"{exc.strerror}: {exc.filename}"
            fail(detail)

    return wrapper  # type: ignore[return-value]


def make_api() -> Api:
    """The SDK's Api as the environment configures it, with progress bars on a terminal."""
    from artifactfs.sdk import Api  # on use: most commands' start should not pay for it

    return Api(config=Config.from_env(), progress=progress_factory())


def confirm(question: str, *, yes: bool, what: str) -> None:
    """Ask ``question`` on a terminal unless ``yes``; exit 1 when the answer is no. Not on a
    terminal (a script, a pipe), nobody can answer, so the command is refused with what to
    pass instead of waiting for input that never comes or taking silence as consent."""
    if yes:
        return
    if not sys.stdin.isatty():
        fail(f"{what} asks for confirmation, and stdin is not a terminal: pass --yes")
    if not click.confirm(question, default=False, err=True):
        fail("nothing done")
