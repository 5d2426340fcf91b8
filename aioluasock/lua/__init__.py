"""The Lua bridge: LuaSocket 3.1 Lua scripts, unmodified, on the asyncio loop.

Each script runs in its own Lua 5.4 state (`lupa.lua54`); `require "socket"`
gives it LuaSocket 3.1's TCP API over aioluasock's engine, and every call that
would block suspends only the Lua coroutine that made it::

    from aioluasock.lua import run_file

    result = await run_file("echo.lua", "8080")    # a task on the running loop

The command line ``python -m aioluasock run SCRIPT.lua [ARGS...]`` calls
`cli_main`. See README-SECTION.md for what is supported and the differences.
"""

from ._cli import cli_main as cli_main
from ._runtime import LuaError as LuaError
from ._runtime import LuaSyntaxError as LuaSyntaxError
from ._runtime import Script as Script
from ._runtime import ScriptResult as ScriptResult
from ._runtime import run_file as run_file
from ._runtime import run_string as run_string

__all__ = ("LuaError", "LuaSyntaxError", "Script", "ScriptResult", "cli_main", "run_file", "run_string")
