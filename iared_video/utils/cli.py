"""How the command-line tools end: a user error is one clear line on stderr and exit code 2.

Every tool's ``if __name__ == "__main__"`` calls ``sys.exit(run_tool(main))``. A user error
(config, checkpoint, input file, data split; see ``user_errors``) then prints
``error: <message>`` and exits with ``USER_ERROR_EXIT``, without a traceback. A traceback is
shown when ``--debug`` is on the command line (removed before ``main`` sees it), when the
trailing config opts hold ``LOG_LEVEL DEBUG``, or when the environment has ``LOG_LEVEL=DEBUG``.
Anything else (a bug) keeps its traceback.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["USER_ERROR_EXIT", "DEBUG_FLAG", "UserError", "InputError", "user_errors", "debug_requested",
           "log_level_opt", "one_line", "run_tool"]

USER_ERROR_EXIT = 2
DEBUG_FLAG = "--debug"


class UserError(Exception):
    """Base of the errors that mean "the user asked for something that cannot work" (config, checkpoint, data).

    Each layer's error class also derives from this one, so that ``run_tool`` knows them without importing them.
    """


class InputError(UserError, RuntimeError):
    """An input file (video, image, folder, split CSV) that cannot be used; the message says why."""


def user_errors() -> tuple[type[BaseException], ...]:
    """The exception classes that mean "the user asked for something that cannot work"."""
    return (UserError, FileNotFoundError, NotADirectoryError, IsADirectoryError)


def log_level_opt(argv: Sequence[str]) -> str | None:
    """The value of a ``LOG_LEVEL VALUE`` pair in ``argv`` (upper case), else None."""
    args = list(argv)
    values = [str(value).upper() for key, value in zip(args, args[1:]) if key == "LOG_LEVEL"]
    return values[-1] if values else None


def debug_requested(argv: Sequence[str]) -> bool:
    """True when ``argv`` holds ``--debug`` or ``LOG_LEVEL DEBUG``, or the environment has ``LOG_LEVEL=DEBUG``."""
    level = log_level_opt(argv) or os.environ.get("LOG_LEVEL", "").upper()
    return DEBUG_FLAG in argv or level == "DEBUG"


def one_line(exc: BaseException) -> str:
    """``exc``'s message on one line: a ``head:`` line then indented items become ``head: a; b``."""
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        return f"{exc.strerror}: {exc.filename}"  # not "[Errno 2] No such file or directory: '...'"
    parts = [part.strip() for part in str(exc).splitlines() if part.strip()]
    if not parts:
        return type(exc).__name__
    head, rest = parts[0], "; ".join(parts[1:])
    return f"{head} {rest}" if head.endswith(":") and rest else "; ".join(parts)


def run_tool(main: Callable[..., Any], argv: Sequence[str] | None = None) -> int:
    """Run a tool's ``main`` and turn its outcome into an exit code.

    Args:
        main: the tool's entry point: ``main(argv)``, or ``main()`` reading ``sys.argv`` when ``argv`` is None.
        argv: command-line arguments (default ``sys.argv[1:]``, which then loses ``--debug`` in place).

    Returns:
        ``main``'s return value when it is an int, 0 for any other value, ``USER_ERROR_EXIT`` after a user
        error (message printed to stderr as ``error: ...``). Re-raises user errors in debug mode.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    debug = debug_requested(args)
    level = "DEBUG" if debug else log_level_opt(args)
    if level:
        os.environ["LOG_LEVEL"] = level  # engine.logging.setup_logging reads it (spawned ranks inherit it)
    cleaned = [a for a in args if a != DEBUG_FLAG]
    try:
        if argv is None:
            sys.argv[1:] = cleaned
            result = main()
        else:
            result = main(cleaned)
    except user_errors() as exc:
        if debug:
            raise
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return USER_ERROR_EXIT
    return result if isinstance(result, int) and not isinstance(result, bool) else 0
