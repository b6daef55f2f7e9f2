"""What every command line of the project shares: one table of exit statuses, and failures as
one line on stderr (the traceback only with --debug).

Scripts and CI jobs branch on the status, so the same kind of outcome has the same status in
every command (docs/cli.md lists them once):

    OK             0  done
    REJECTED       1  the command ran and the answer is no: the data gate stopped the run, the
                      span was rejected, skew was found, the server answered with an error,
                      the registry refused the action, the candidate is worse
    FAILED         2  could not do its job: bad flags or configuration, or an unexpected error
    INPUT_MISSING  3  a file, store or artifact it was pointed at does not exist
    BAD_INPUT      4  the input exists but cannot be parsed or holds nothing usable
    UNREACHABLE    5  no server answers (or a port cannot be bound)
"""

from __future__ import annotations

import enum
import functools
import sys
import traceback
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


class Exit(enum.IntEnum):
    """The project's exit statuses (module docstring)."""

    OK = 0
    REJECTED = 1
    FAILED = 2
    INPUT_MISSING = 3
    BAD_INPUT = 4
    UNREACHABLE = 5


class CommandError(Exception):
    """An expected failure: `message` is printed as one line and the command exits `status`."""

    def __init__(self, message: str, status: Exit = Exit.FAILED) -> None:
        super().__init__(message)
        self.status = status


def one_line(message: object) -> str:
    """`message` on one line: newlines (from a server, a TF error, a reason) shown escaped."""
    lines = str(message).strip().splitlines()
    return "\\n".join(lines) if lines else "failed"


def fail(message: object, status: Exit = Exit.FAILED, prefix: str = "Error: ") -> NoReturn:
    """Print `message` as one line on stderr and exit with `status`."""
    print(f"{prefix}{one_line(message)}", file=sys.stderr)
    sys.exit(int(status))


def handle_errors(
    debug: Callable[[], bool] = lambda: "--debug" in sys.argv,
) -> Callable[[F], F]:
    """Decorate a command: CommandError -> its status; any other exception -> FAILED with its
    type and a hint to rerun with --debug; `debug()` true -> the exception propagates."""

    def wrap(func: F) -> F:
        @functools.wraps(func)
        def run(*args: Any, **kwargs: Any) -> Any:
            try:
                return func(*args, **kwargs)
            except CommandError as e:
                if debug():
                    raise
                fail(e, e.status)
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as e:  # noqa: BLE001 - one line without --debug, still the cause
                if debug():
                    raise
                where = traceback.extract_tb(e.__traceback__)[-1]
                hint = f"at {where.name}; rerun with --debug for the traceback"
                fail(f"{type(e).__name__}: {e} ({hint})", Exit.FAILED)

        return run  # type: ignore[return-value]

    return wrap
