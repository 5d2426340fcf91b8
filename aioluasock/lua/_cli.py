"""`python -m aioluasock run [options] SCRIPT.lua [ARGS...]`: the `lua` command, on the loop."""

from __future__ import annotations

import asyncio
import sys
from typing import Any, Final

from ._runtime import LuaError, LuaSyntaxError, Script, ScriptResult

__all__ = ["cli_main"]

_PROG: Final = "aioluasock"
_USAGE: Final = f"""usage: python -m {_PROG} run [options] [script [args]]
Available options are:
  -e stat       execute string 'stat'
  -l name       require library 'name' into global 'name'
  -v            show version information
  --loop NAME   run on the 'asyncio' (default) or 'uvloop' event loop
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
    """
    prelude: list[bytes | tuple[str, str]] = []
    loop_name = "asyncio"
    index = 0
    script: str | None = None
    while index < len(argv):
        item = argv[index]
        if item == "--":
            index += 1
            script = argv[index] if index < len(argv) else None
            break
        if item in ("-e", "-l", "--loop") or (item.startswith(("-e", "-l")) and len(item) > 2):
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
    options: dict[str, Any] = {"prelude": tuple(prelude), "interpreter_args": tuple(argv[:index])}
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


def _run(script: Script, loop_name: str) -> ScriptResult:
    if loop_name == "uvloop":
        import uvloop

        result: ScriptResult = uvloop.run(script.run())
        return result
    return asyncio.run(script.run())
