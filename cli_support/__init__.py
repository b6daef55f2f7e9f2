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
from collections.abc import Callable, Mapping
from typing import Any, NoReturn, TypeVar

import click

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


DEBUG_KEY = "cli_support.debug"


def _remember_debug(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    if value:
        ctx.find_root().meta[DEBUG_KEY] = True
    return value


def debug_option(func: F) -> F:
    """`--debug` on a click command or group: the traceback instead of the one line. Eager and
    kept on the root context, so `mlops --debug x`, `mlops x --debug` and a group's flag work."""
    return click.option(
        "--debug",
        is_flag=True,
        is_eager=True,
        expose_value=False,
        callback=_remember_debug,
        help="Show the traceback instead of one line on failure.",
    )(func)


def debug_requested() -> bool:
    """True when --debug was given: on the running click command line, or in sys.argv."""
    ctx = click.get_current_context(silent=True)
    if ctx is not None and ctx.find_root().meta.get(DEBUG_KEY):
        return True
    return "--debug" in sys.argv


def _describe(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror:
        return f"{e.strerror}: {e.filename}" if e.filename else e.strerror
    return str(e) or type(e).__name__


def handle_errors(
    debug: Callable[[], bool] = debug_requested,
    known: Mapping[type[BaseException], Exit] | None = None,
) -> Callable[[F], F]:
    """Decorate a command: CommandError -> its status; an exception of a `known` type (a
    package's own error, e.g. RegistryError -> REJECTED) -> that status with its message; a
    missing file -> INPUT_MISSING; any other exception -> FAILED with its type and a hint to
    rerun with --debug. With `debug()` true the exception propagates (the full traceback)."""
    table: dict[type[BaseException], Exit] = {
        FileNotFoundError: Exit.INPUT_MISSING,
        OSError: Exit.FAILED,
    }
    table.update(known or {})

    def status_of(e: BaseException) -> Exit | None:
        for kind in type(e).__mro__:
            if kind in table:
                return table[kind]
        return None

    def wrap(func: F) -> F:
        @functools.wraps(func)
        def run(*args: Any, **kwargs: Any) -> Any:
            try:
                return func(*args, **kwargs)
            except (KeyboardInterrupt, SystemExit, click.exceptions.Exit, click.Abort):
                raise
            except click.ClickException:
                raise  # usage errors: click's status (2), printed by the entry point
            except Exception as e:  # noqa: BLE001 - one line without --debug, still the cause
                if debug():
                    raise
                if isinstance(e, CommandError):
                    fail(e, e.status)
                status = status_of(e)
                if status is not None:
                    fail(_describe(e), status)
                where = traceback.extract_tb(e.__traceback__)[-1]
                hint = f"at {where.name}; rerun with --debug for the traceback"
                fail(f"{type(e).__name__}: {e} ({hint})", Exit.FAILED)

        return run  # type: ignore[return-value]

    return wrap


def run_click(main: Callable[..., Any], prog_name: str, **kwargs: Any) -> NoReturn:
    """Run a click command's `main` with usage errors as one line too (`Error: No such option
    '--x'.`) instead of click's usage block: what `mlops` and every subcommand under it print."""
    try:
        result = main(prog_name=prog_name, standalone_mode=False, **kwargs)
    except click.exceptions.NoArgsIsHelpError as e:
        e.show()  # a bare group: its help is the answer, not an error line
        sys.exit(e.exit_code)
    except click.ClickException as e:
        if debug_requested():
            raise
        fail(e.format_message(), Exit(e.exit_code) if e.exit_code in set(Exit) else Exit.FAILED)
    except click.Abort:
        fail("aborted", Exit.FAILED)
    sys.exit(result if isinstance(result, int) else 0)
