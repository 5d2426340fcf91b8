"""`python -m aioluasock run [options] SCRIPT.lua [ARGS...]`: the `lua` command, on the loop."""

from __future__ import annotations

import asyncio
import math
import sys
from typing import Any, Final

from ._runtime import DEFAULT_SLICE, LuaError, LuaSyntaxError, Script, ScriptResult

__all__ = ["cli_main"]

_PROG: Final = "aioluasock"
_USAGE: Final = f"""usage: python -m {_PROG} run [options] [script [args]]
Available options are:
  -e stat       execute string 'stat'
  -l name       require library 'name' into global 'name'
  -v            show version information
  --loop NAME   run on the 'asyncio' (default) or 'uvloop' event loop
  --slice S     yield to the loop after S seconds of computing (default
                {DEFAULT_SLICE:g}; 0: never)
  --cpu-limit S end the script after S seconds of CPU time
  --            stop handling options
  -             execute stdin and stop handling options
"""


def _fail(message: str) -> int:
    sys.stderr.write(f"{_PROG}: {message}\n")
    sys.stderr.flush()
    return 1


def cli_main(argv: list[str]) -> int:
    """Run a Lua script as the `lua` interpreter would, on a new event loop.

    Args:
        argv: the arguments after ``run``: options (``-e CODE``, ``-l NAME``,
            ``-v``, ``--loop asyncio|uvloop``, ``--``, ``-``), then the script
            and its arguments. Without a script, only the ``-e``/``-l``
            chunks run.

    Returns:
        The exit status: 0, the code given to `os.exit`, or 1 after an
        uncaught error (its message and Lua traceback go to stderr).
        ``--slice SECONDS`` and ``--cpu-limit SECONDS`` set the script's
        time slice (0: none) and CPU limit (see `Script`).
    """
    prelude: list[bytes | tuple[str, str]] = []
    loop_name = "asyncio"
    budget: dict[str, float | None] = {}
    index = 0
    script: str | None = None
    while index < len(argv):
        item = argv[index]
        if item == "--":
            index += 1
            script = argv[index] if index < len(argv) else None
            break
        if item in ("-e", "-l", "--loop", "--slice", "--cpu-limit") or (
            item.startswith(("-e", "-l")) and len(item) > 2
        ):
            if len(item) > 2 and item[:2] in ("-e", "-l"):
                value, flag = item[2:], item[:2]
            elif index + 1 < len(argv):
                flag, value = item, argv[index + 1]
                index += 1
            else:
                sys.stderr.write(f"{_PROG}: '{item}' needs argument\n{_USAGE}")
                return 1
            if flag == "-e":
                prelude.append(value.encode("utf-8", "surrogateescape"))
            elif flag == "-l":
                prelude.append(("require", value))
            elif flag in ("--slice", "--cpu-limit"):
                seconds = _seconds(value)
                if seconds is None or (seconds == 0 and flag == "--cpu-limit"):
                    return _fail(f"'{flag}' needs a number of seconds, not '{value}'")
                budget["slice" if flag == "--slice" else "cpu_limit"] = seconds or None
            else:
                if value not in ("asyncio", "uvloop"):
                    return _fail(f"unknown loop '{value}' (use asyncio or uvloop)")
                loop_name = value
            index += 1
            continue
        if item == "-v":
            sys.stdout.write("Lua 5.4 (lupa) with aioluasock's LuaSocket 3.1 bridge\n")
            index += 1
            continue
        if item.startswith("-") and item != "-":
            sys.stderr.write(f"{_PROG}: unrecognized option '{item}'\n{_USAGE}")
            return 1
        script = item
        break
    if script is None and not prelude and "-v" not in argv:
        sys.stderr.write(_USAGE)
        return 1
    script_args = tuple(argv[index + 1 :]) if script is not None else ()
    options: dict[str, Any] = {"prelude": tuple(prelude), "interpreter_args": tuple(argv[:index]), **budget}
    try:
        if script is None:
            runner = Script(b"", "=(command line)", argv0=_PROG, **options)
        elif script == "-":
            runner = Script(sys.stdin.buffer.read(), "=stdin", script_args, argv0="-", **options)
        else:
            runner = Script.from_file(script, script_args, **options)
    except OSError:
        return _fail(f"cannot open {script}")
    try:
        result = _run(runner, loop_name)
    except LuaSyntaxError as exc:
        return _fail(exc.message)
    except LuaError as exc:
        return _fail(exc.traceback)
    except KeyboardInterrupt:
        return _fail("interrupted!")
    return result.status


def _seconds(text: str) -> float | None:
    """A non-negative, finite number of seconds, or None."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if 0 <= value < math.inf else None


def _run(script: Script, loop_name: str) -> ScriptResult:
    if loop_name == "uvloop":
        import uvloop

        result: ScriptResult = uvloop.run(script.run())
        return result
    return asyncio.run(script.run())
