"""Lua states, the driver of their coroutines, and the embedding API.

Each script gets its own Lua 5.4 state (`lupa.lua54`). Its main chunk runs
as a root Lua coroutine (`_Root`): when the chunk calls a socket function
that must wait, `bridge.lua` yields a request (a Python coroutine function
and its arguments), and the coroutine is resumed with the results once the
request is done. `aioluasock.spawn` starts more roots, so one script can
serve many clients at once while the loop and everything else on it keep
running. Roots are driven by the loop's callbacks, not by asyncio tasks: a
blocking receive and a select wait on the protocols themselves, and only
the other requests run as (helper) tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Final, final

import lupa.lua54 as lupa

from .._errors import BusyError
from .._protocol import StreamProtocol, flush_deferred
from .._tcp import Client, Server
from ._bridge import Bridge, ParkedSelect, ScriptExit, Values
from ._budget import LIMIT_MESSAGE, Budget
from ._budget import available as budget_available

__all__ = ["DEFAULT_SLICE", "LuaError", "LuaSyntaxError", "Script", "ScriptResult", "run_file", "run_string"]

DEFAULT_SLICE: Final = 0.01
"""Seconds of wall-clock time a script's step may run before it yields to the loop."""

_BRIDGE_SOURCE: Final = resources.files(__package__).joinpath("bridge.lua").read_bytes()
_MIME_SOURCE: Final = resources.files(__package__).joinpath("mime_core.lua").read_bytes()
_LUASEC_SOURCE: Final = resources.files(__package__).joinpath("luasec.lua").read_bytes()

# Runs once per state, before the script: loads bridge.lua, installs the
# modules and the coroutine library, and applies the sandbox.
_SETUP: Final = b"""
local bridge_source, B, sandbox, extra_path, mime_source, luasec_source, limited = ...
local api = assert(load(bridge_source, "=[aioluasock]", "t"))(B)
-- For the CPU limit (see _budget.py): what makes a thread fail past it.
debug.getregistry()["aioluasock.kill"] = api.kill
if limited then xpcall = api.xpcall end
local main_thread = string.format("%p", coroutine.running())
local mime_core = assert(load(mime_source, "=[mime.core]", "t"))
local luasec = assert(load(luasec_source, "=[ssl]", "t"))
local internal = api.internal
api.internal = nil
local real_load, stdout = load, io.stdout
python = nil
package.loaded.python = nil
package.preload["socket.core"] = function() return api.socket end
package.preload["socket"] = function() return api.socket end
package.preload["socket.unix"] = function() return api.unix end
package.preload["aioluasock"] = function() return api.ext end
package.preload["mime.core"] = function() return mime_core() end
package.preload["ssl"] = function() return luasec(internal) end
coroutine = api.coroutine
package.loaded.coroutine = api.coroutine
os.exit = api.exit
if extra_path ~= nil then package.path = package.path .. extra_path end
local mode = "bt"
if sandbox then
  mode = "t"
  local preload, loaded = package.preload, package.loaded
  preload["ssl"] = nil  -- it opens files (keys, certificates)
  preload["socket.unix"] = nil  -- it makes and connects to files
  local keep = { _G = true, coroutine = true, math = true, string = true, table = true, utf8 = true }
  for name in pairs(loaded) do
    if not keep[name] then loaded[name] = nil end
  end
  io, os, debug, package, load, loadfile, dofile = nil, nil, nil, nil, nil, nil, nil
  string.dump = nil
  collectgarbage = nil
  -- Lua runs finalizers with hooks off: a script's own `__gc` would be
  -- beyond the time slice and the CPU limit (and would run when the state
  -- is closed, after the script).
  local setmetatable = setmetatable
  _G.setmetatable = function(t, mt)
    if type(mt) == "table" and rawget(mt, "__gc") ~= nil then
      error("__gc metamethods are not permitted in the sandbox", 2)
    end
    local r = setmetatable(t, mt)
    return r
  end
  require = function(name)
    if type(name) ~= "string" then error("bad argument #1 to 'require' (string expected)", 2) end
    local value = loaded[name]
    if value ~= nil then return value end
    local loader = preload[name]
    if loader == nil then error("module '" .. name .. "' not found (sandboxed)", 2) end
    value = loader(name)
    if value == nil then value = true end
    loaded[name] = value
    return value
  end
end
local function compile(source, chunkname)
  return real_load(source, chunkname, mode)
end
local function set_arg(script_index, ...)
  local t = {}
  for i = 1, select("#", ...) do t[i - 1 - script_index] = (select(i, ...)) end
  arg = t
end
local function flush()
  if stdout ~= nil then pcall(stdout.flush, stdout) end
end
local function run_all(...)
  local n = select("#", ...)
  local chunks = table.pack(...)
  local results = table.pack()
  for i = 1, n do
    local chunk = chunks[i]
    if type(chunk) == "table" then
      _G[chunk[1]] = require(chunk[1])
    elseif i < n then
      chunk()
    else
      return chunk(table.unpack(arg or {}, 1, #(arg or {})))
    end
  end
end
return api.step, api.new_root, api.drop, api.RAISE, compile, set_arg, flush, run_all, api.finish, main_thread
"""

_DEBIAN_PATH: Final = "/usr/share/lua/5.4"


class LuaError(Exception):
    """A Lua error that ended a script (or a chunk that did not compile).

    Attributes:
        message: the error message (a non-string error value is described,
            as the `lua` interpreter does: "(error object is a table value)").
        traceback: the Lua traceback of the coroutine that raised.
        value: the raised Lua value itself (bytes for a string).
    """

    def __init__(self, message: str, traceback: str = "", value: object = None) -> None:
        super().__init__(message)
        self.message = message
        self.traceback = traceback or message
        self.value = value


@final
class LuaSyntaxError(LuaError):
    """The chunk did not compile (syntax error, or a binary chunk in a sandbox)."""


@final
@dataclass(frozen=True)
class ScriptResult:
    """How a script ended.

    Attributes:
        status: 0 when the main chunk returned, else the code given to `os.exit`.
        values: what the main chunk returned (strings as `bytes`, tables as
            `dict`); empty after `os.exit`.
    """

    status: int
    values: tuple[object, ...] = field(default=())


def _deny_attributes(obj: object, name: object, setting: bool) -> object:
    # No Python attribute is ever reachable from Lua.
    raise AttributeError("Python attributes are not accessible from Lua")


def _decode(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _to_python(value: object, depth: int = 0) -> object:
    if lupa.lua_type(value) == "table" and depth < 32:
        return {_to_python(k, depth + 1): _to_python(v, depth + 1) for k, v in value.items()}  # type: ignore[attr-defined]
    return value


def _read_source(path: str) -> bytes:
    """Read a script file as `luaL_loadfile` does: a UTF-8 BOM and a first
    line starting with '#' (a shebang) are skipped, line numbers kept."""
    with open(path, "rb") as f:
        data = f.read()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if data.startswith(b"#"):
        end = data.find(b"\n")
        data = b"" if end < 0 else data[end:]
    return data


class Script:
    """One Lua script in its own Lua state, run as a task on the running loop.

    Args:
        source: the main chunk (Lua source; also a binary chunk unless sandboxed).
        chunkname: its name in messages and tracebacks (``"@file.lua"`` for a
            file, ``"=name"`` for a literal name).
        args: the script's arguments (the `arg` table and the chunk's `...`).
        sandbox: no `io`, `os`, `debug`, `package`, `load`, `loadfile`,
            `dofile`, `string.dump` or `collectgarbage`; `require` serves only
            ``"socket"``, ``"socket.core"``, ``"mime.core"`` and
            ``"aioluasock"``; binary chunks are refused; no descriptor but
            the script's own sockets' (`setfd` and foreign descriptors in
            `select` raise errors); no `__gc` metamethods (Lua runs
            finalizers with hooks off: beyond `slice` and `cpu_limit`);
            `getmetatable` on a socket or task handle gives a copy.
        max_memory: cap on the Lua state's memory, in bytes (None: no cap).
        prelude: chunks run first, in order, as ``lua -e`` does: Lua source
            as `bytes`, or ``("require", name)`` for ``lua -l name``.
        argv0: the `arg[0]` entry (the script name); None: the chunk name.
        interpreter, interpreter_args: `arg`'s negative entries, as the `lua`
            command puts its own name and options there.
        slice: the time slice, in seconds: a script that computes for longer
            than this without waiting on a socket yields to the loop, so the
            loop's other tasks (and other scripts) keep running. None: no
            slicing (a busy script then holds the loop until it waits; Lua
            runs without the count hook, up to twice as fast in tight loops).
            Lua cannot yield inside a C function that called it (a
            `string.gsub` callback, a `table.sort` comparator, a `require`d
            chunk), nor during one long C call (`string.rep`, a pattern
            match): there the slice ends at the first point where it can.
        cpu_limit: CPU seconds the script may use, in all its tasks together
            (None: no limit). Past it the script ends with a `LuaError`
            "CPU time limit exceeded", its tasks cancelled and its sockets
            closed; a `pcall` cannot catch it.

    Without the sandbox a script can remove its own time slice and limit with
    `debug.sethook`; with it, `debug` is out of its reach.

    Python attributes are never reachable from Lua: the state has no
    `python` module and refuses attribute access on any Python object.
    """

    def __init__(
        self,
        source: str | bytes,
        chunkname: str = "=(string)",
        args: tuple[str | bytes, ...] = (),
        *,
        sandbox: bool = False,
        max_memory: int | None = None,
        prelude: tuple[bytes | tuple[str, str], ...] = (),
        argv0: str | None = None,
        interpreter: str = "aioluasock",
        interpreter_args: tuple[str, ...] = (),
        slice: float | None = DEFAULT_SLICE,
        cpu_limit: float | None = None,
    ) -> None:
        for name, value in (("slice", slice), ("cpu_limit", cpu_limit)):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int | float) or not (0 < value < math.inf)
            ):
                raise ValueError(f"{name} must be a positive number of seconds or None, not {value!r}")
        self._source = source.encode() if isinstance(source, str) else source
        self._chunkname = chunkname
        self._args = tuple(a.encode() if isinstance(a, str) else a for a in args)
        self._sandbox = sandbox
        self._max_memory = max_memory
        self._prelude = prelude
        self._argv0 = argv0
        self._interpreter = interpreter
        self._interpreter_args = interpreter_args
        self._slice = None if slice is None else float(slice)
        self._cpu_limit = None if cpu_limit is None else float(cpu_limit)

    @classmethod
    def from_file(cls, path: str, args: tuple[str | bytes, ...] = (), **options: Any) -> Script:
        """A script read from `path` (chunk name ``"@path"``, `arg[0]` = `path`).

        Raises:
            OSError: the file cannot be read.
        """
        options.setdefault("argv0", path)
        return cls(_read_source(path), "@" + path, args, **options)

    def start(self) -> asyncio.Task[ScriptResult]:
        """Run the script as a new task on the running loop."""
        return asyncio.get_running_loop().create_task(self.run())

    async def run(self) -> ScriptResult:
        """Run the script until its main chunk and every task it spawned end.

        Returns:
            A `ScriptResult` (status 0 and the main chunk's values, or the
            code given to `os.exit`).

        Raises:
            LuaSyntaxError: a chunk does not compile.
            LuaError: an uncaught Lua error in the main chunk or in a spawned
                task (the other tasks are cancelled); "not enough memory"
                when `max_memory` is exceeded; "CPU time limit exceeded"
                past `cpu_limit`.
            asyncio.CancelledError: the task was cancelled: the script's tasks
                are cancelled and its sockets closed first.
        """
        return await _Run(self).run()

    # -- for _Run ------------------------------------------------------------

    def _runtime(self, bridge: Bridge) -> tuple[Any, tuple[Any, ...]]:
        options: dict[str, Any] = {}
        if self._max_memory is not None:
            options["max_memory"] = self._max_memory
        runtime = lupa.LuaRuntime(
            encoding=None,
            register_eval=False,
            register_builtins=False,
            unpack_returned_tuples=True,
            attribute_filter=_deny_attributes,
            **options,
        )
        extra = None
        if not self._sandbox and os.path.isdir(_DEBIAN_PATH):
            extra = f";{_DEBIAN_PATH}/?.lua;{_DEBIAN_PATH}/?/init.lua".encode()
        setup = runtime.execute(
            _SETUP,
            _BRIDGE_SOURCE,
            runtime.table_from(bridge.table()),
            self._sandbox,
            extra,
            _MIME_SOURCE,
            _LUASEC_SOURCE,
            self._cpu_limit is not None,
        )
        return runtime, setup

    def _chunks(self, compile_chunk: Any) -> list[object]:
        chunks: list[object] = []
        for number, item in enumerate((*self._prelude, self._source)):
            if isinstance(item, tuple):
                chunks.append(item)
                continue
            name = self._chunkname if number == len(self._prelude) else "=(command line)"
            result = compile_chunk(item, name.encode())
            if isinstance(result, tuple):
                message = _decode(result[1])
                raise LuaSyntaxError(message, message, result[1])
            chunks.append(result)
        return chunks


class _Root:
    """One root Lua coroutine (the main chunk, or a task `spawn`ed), driven
    by the loop's callbacks rather than by an asyncio task.

    Each step runs the coroutine until it waits. A receive that has to wait
    (a blocking `"*l"` or count receive on a plain client) parks the root as
    the protocol's read waiter, and a `select` (with no timeout or a
    positive one) as the waiter of its objects: their callbacks put it on
    its run's ready list, and one loop callback then resumes every root made
    ready since, so a ping-pong line costs no future, no task step and no
    coroutine frames. Any other request (accept, sleep, connect, dns, ...)
    runs as a helper task, whose end resumes the root.

    `finished` is the root's end (its results, its exception, or cancelled);
    it stands where an asyncio task's own result would.
    """

    __slots__ = (
        "_accepting",
        "_args",
        "_must_cancel",
        "_queued",
        "_reading",
        "_run",
        "_selecting",
        "_stepping",
        "finished",
        "helper",
        "main",
        "root",
        "thread",
    )

    def __init__(self, run: _Run, thread: int, args: Values, main: bool, root: int) -> None:
        self._run = run
        self.thread = thread
        self.main = main
        self.root = root  # the coroutine's address (for the time slice's watchdog)
        self._args: Values | None = args  # what the first step passes
        self.finished: asyncio.Future[Values] = run.loop.create_future()
        self.helper: asyncio.Task[Values] | None = None
        self._reading: tuple[Client, StreamProtocol, int, int] | None = None
        self._selecting: ParkedSelect | None = None
        self._accepting: Server | None = None
        self._queued = False
        self._stepping = False
        self._must_cancel = False

    # -- the waiter of a parked receive or select (`_protocol.Waiter`) -------

    def done(self) -> bool:
        return self._queued or (self._reading is None and self._selecting is None and self._accepting is None)

    def set_result(self, _: bool) -> None:
        if not self._queued:
            self._queued = True
            self._run.ready(self)

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._run.loop

    # -- driving -------------------------------------------------------------

    def go(self) -> None:
        """Resume (from the run's ready list): start, or look again at what
        the parked receive waits for."""
        self._queued = False
        if self.finished.done():
            return
        if self._selecting is not None:
            self._select_again(self._selecting)
            return
        if self._accepting is not None:
            self._accept_again(self._accepting)
            return
        reading = self._reading
        if reading is None:
            args, self._args = self._args, None
            if args is not None:
                self._steps(args)
            return
        obj, proto, kind, count = reading
        obj._unpark_reader(proto, self)
        try:
            values = Bridge.receive_look(obj, kind, count)
        except Exception as exc:
            self._reading = None
            self._end(None, exc)
            return
        if values is None:
            # Woken by something else (a select's notify): wait again.
            self._reading = (obj, obj._park_reader(self), kind, count)
            return
        self._reading = None
        self._steps(values)

    def _select_again(self, parked: ParkedSelect) -> None:
        loop = self._run.loop
        parked.selection.unwatch(parked.watch)
        try:
            values = parked.look()
        except Exception as exc:
            self._selecting = None
            self._end(None, exc)
            return
        if values is None:
            if not parked.expired:
                parked.watch = parked.selection.watch(loop, self)  # woken, nothing ready: again
                return
            values = (None, b"timeout")
        if parked.timer is not None:
            parked.timer.cancel()
        self._selecting = None
        self._steps(values)

    def _accept_again(self, server: Server) -> None:
        self._unpark_accept(server)
        try:
            values = self._run.bridge.accept_look(server)
        except Exception as exc:
            self._accepting = None
            self._end(None, exc)
            return
        if values is None:
            self._park_accept(server)  # woken, nothing pending: again
            return
        self._accepting = None
        self._steps(values)

    def _park_accept(self, server: Server) -> None:
        # (No lingering reader callback, as the engine's accept loop keeps:
        # the same waiter, watched again, would be removed with it.)
        self._accepting = server
        server._accept_busy = True
        server._watch_fd(self._run.loop, self, False)

    def _unpark_accept(self, server: Server) -> None:
        server._accept_busy = False
        if server._sock is not None:
            server._unwatch_fd(self._run.loop, self, False)

    def _park_select(self, parked: ParkedSelect) -> None:
        loop = self._run.loop
        self._selecting = parked
        parked.watch = parked.selection.watch(loop, self)
        if parked.deadline is not None:
            # (Whether the timer fired is what counts: uvloop may run it a
            # little before `loop.time()` reaches the deadline.)
            parked.timer = loop.call_at(parked.deadline, self._expire, parked)

    def _expire(self, parked: ParkedSelect) -> None:
        parked.expired = True
        self.set_result(False)

    def _steps(self, values: Values) -> None:
        """Run the coroutine until it waits or ends."""
        run = self._run
        self._stepping = True
        run.stepping += 1
        try:
            self._run_steps(values)
        except Exception as exc:
            self._end(None, exc)
        finally:
            self._stepping = False
            run.stepping -= 1

    def _run_steps(self, values: Values) -> None:
        run = self._run
        step = run.step
        budget = run.budget
        receive = run.bridge_receive
        select = run.bridge_select
        select_kept = run.bridge_select_kept
        accept = run.bridge_accept
        co = self.thread
        while True:
            if budget is None:
                try:
                    result = step(co, *values)
                except lupa.LuaMemoryError:
                    raise LuaError("not enough memory") from None
            else:
                budget.begin(self.root)
                try:
                    result = step(co, *values)
                except lupa.LuaMemoryError:
                    raise LuaError("not enough memory") from None
                except lupa.LuaError:
                    # The limit's error reached the state's main thread,
                    # which runs `step` itself (and the script's code only
                    # through it: an error value's __tostring).
                    if budget.exceeded:
                        raise LuaError(budget.message()) from None
                    raise
                finally:
                    budget.end()
                if budget.exceeded:
                    # Never resume a script past its limit; where its error
                    # already ended a coroutine, its message is ours.
                    traceback = _decode(result[2]) if result[0] == 3 else ""
                    message = budget.message()
                    raise LuaError(message, traceback.replace(LIMIT_MESSAGE, message, 1))
            kind = result[0]
            if kind == 2:
                request = result[1]
                if self._must_cancel:
                    self._end(None, None)
                    return
                if request is receive and Bridge.receive_parkable(*result[2:]):
                    obj, pattern, count = result[2], result[3], result[4]
                    looked = Bridge.receive_look(obj, pattern, count)
                    if looked is None:
                        self._reading = (obj, obj._park_reader(self), pattern, count)
                        return
                    values = looked
                    continue
                if request is accept and Bridge.accept_parkable(result[2]):
                    server = result[2]
                    accepted = run.bridge.accept_look(server)
                    if accepted is None:
                        self._park_accept(server)
                        return
                    values = accepted
                    continue
                if request is select or request is select_kept:
                    try:
                        if request is select:
                            selected = run.bridge.select_look(*result[2:])
                        else:
                            selected = run.bridge.kept_look(*result[2:])
                    except (TypeError, ValueError, OverflowError) as exc:
                        values = (run.raise_tag, str(exc).encode())
                        continue
                    if type(selected) is ParkedSelect:
                        self._park_select(selected)
                        return
                    if selected is not None:
                        values = selected
                        continue
                try:
                    helper = run.loop.create_task(request(*result[2:]))
                except (TypeError, ValueError, OverflowError) as exc:
                    values = (run.raise_tag, str(exc).encode())
                    continue
                self.helper = helper
                helper.add_done_callback(self._helped)
                return
            if kind == 1:
                count = result[1]
                # (Cancelled while it ran: it ends cancelled, as a task would.)
                self._end(None if self._must_cancel else tuple(result[2 : 2 + count]), None)
                return
            message = _decode(result[1])
            raise LuaError(message, _decode(result[2]), result[3])

    def _helped(self, helper: asyncio.Task[Values]) -> None:
        if helper is not self.helper:
            return  # cancelled with the root
        self.helper = None
        if self.finished.done():
            return
        if helper.cancelled():
            # Nobody but the root cancels its helper: a cancellation from
            # outside (the loop closing) ends the root as cancelled too.
            self._end(None, None)
            return
        exc = helper.exception()
        if exc is None:
            values = helper.result()
        elif isinstance(exc, BusyError | TypeError | ValueError | OverflowError):
            # Misuse the Lua side could not see (two coroutines receiving
            # on one socket): a Lua error in the caller.
            values = (self._run.raise_tag, str(exc).encode())
        else:
            self._end(None, exc)
            return
        self._steps(values)

    def cancel(self) -> bool:
        """End the root at its next wait (now, if it waits); False when it
        has ended."""
        if self.finished.done():
            return False
        if self._stepping:
            self._must_cancel = True
        else:
            self._end(None, None)
        return True

    def _end(self, values: Values | None, exc: BaseException | None) -> None:
        """Finish: with `values` (returned), `exc` (raised), or neither
        (cancelled)."""
        reading, self._reading = self._reading, None
        if reading is not None:
            reading[0]._unpark_reader(reading[1], self)
        server, self._accepting = self._accepting, None
        if server is not None:
            self._unpark_accept(server)
        parked, self._selecting = self._selecting, None
        if parked is not None:
            parked.selection.unwatch(parked.watch)
            if parked.timer is not None:
                parked.timer.cancel()
        helper, self.helper = self.helper, None
        if helper is not None:
            helper.cancel()
        self._run.forget(self.thread)
        finished = self.finished
        if finished.done():
            return
        if exc is not None:
            finished.set_exception(exc)
        elif values is not None:
            if self.main:
                self._run.main_values = values
            finished.set_result(values)
        else:
            finished.cancel()


class _Run:
    """The state of one run of a script: its Lua state, roots and sockets."""

    def __init__(self, script: Script) -> None:
        self._script = script
        self._tasks: dict[int, _Root] = {}
        self._running: set[_Root] = set()
        self._ready: list[_Root] = []
        self.stepping = 0  # roots in a step (Lua runs)
        self._main = 0
        self._failure: LuaError | None = None
        self._exit: int | None = None
        self._idle: asyncio.Future[None] | None = None
        self.main_values: Values = ()
        self.loop = asyncio.get_running_loop()
        self.budget: Budget | None = None
        slice_, cpu_limit = script._slice, script._cpu_limit
        if slice_ == DEFAULT_SLICE and cpu_limit is None and not budget_available():
            # A lupa without the Lua C API: the default runs unsliced; asking
            # for a slice or a limit explicitly raises (in Budget).
            slice_ = None
        if slice_ is not None or cpu_limit is not None:
            self.budget = Budget(slice_, cpu_limit)
        budget = self.budget
        self._bridge = Bridge(
            self._spawn,
            self._tasks,  # type: ignore[arg-type]  # a _Root is a Task
            self._running,  # type: ignore[arg-type]
            sandbox=script._sandbox,
            hook_thread=budget.hook_thread if budget is not None and budget.watched else None,
        )
        self.bridge = self._bridge
        self._runtime, setup = script._runtime(self._bridge)
        # The very objects Lua holds (a bound method is made anew at each
        # attribute access): requests are recognised by identity.
        self.bridge_receive = self._bridge.functions[b"receive"]
        self.bridge_select = self._bridge.functions[b"select"]
        self.bridge_select_kept = self._bridge.functions[b"select_kept"]
        self.bridge_accept = self._bridge.functions[b"accept"]
        (
            self.step,
            self._new_root,
            self.drop,
            self.raise_tag,
            self._compile,
            self._set_arg,
            self._flush,
            self._run_all,
            self._finish,
            main_thread,
        ) = setup
        self._main_thread = int(main_thread, 16)

    async def run(self) -> ScriptResult:
        script = self._script
        loop = self.loop
        self._idle = loop.create_future()
        budget = self.budget
        try:
            if budget is not None:
                budget.install(self._main_thread)
            try:
                chunks = script._chunks(self._compile)
            except lupa.LuaMemoryError:
                raise LuaError("not enough memory") from None
            for index, chunk in enumerate(chunks):
                if isinstance(chunk, tuple):
                    chunks[index] = self._runtime.table_from([chunk[1].encode()])
            argv0 = (script._argv0 or script._chunkname.lstrip("@=")).encode()
            prefix = [a.encode() for a in (script._interpreter, *script._interpreter_args)]
            self._set_arg(len(prefix), *prefix, argv0, *script._args)
            self._main, address = self._new_root(self._run_all, b"main")
            self._spawn(self._main, tuple(chunks), address)
            try:
                await asyncio.shield(self._idle)
            except asyncio.CancelledError:
                await self._cancel_all()
                raise
            if self._exit is not None:
                return ScriptResult(self._exit)
            if self._failure is not None:
                raise self._failure
            return ScriptResult(0, tuple(_to_python(v) for v in self.main_values))
        finally:
            if budget is not None:
                budget.uninstall()
            self._bridge.close_all()
            if self._bridge.handshakes:
                await self._bridge.handshakes.settle()
            with contextlib.suppress(lupa.LuaError):
                self._flush()
                self._finish()

    async def _cancel_all(self) -> None:
        roots = list(self._running)
        helpers = [root.helper for root in roots if root.helper is not None]
        for root in roots:
            root.cancel()
        # The requests under way end (and clean up) before the sockets close.
        if helpers:
            await asyncio.wait(helpers)
        finished = [root.finished for root in roots]
        if finished:
            await asyncio.wait(finished)

    def _spawn(self, thread: int, args: Values, address: bytes) -> None:
        root = _Root(self, thread, args, thread == self._main, int(address, 16))
        self._tasks[thread] = root
        self._running.add(root)
        root.finished.add_done_callback(lambda _: self._root_done(root))
        # (Called from Lua too: the first step runs from the loop.)
        self.ready(root)

    def ready(self, root: _Root) -> None:
        """Resume `root` from the loop, with the others made ready since the
        loop last ran them."""
        ready = self._ready
        ready.append(root)
        if len(ready) == 1:
            self.loop.call_soon(self._resume_ready)

    def _resume_ready(self) -> None:
        ready, self._ready = self._ready, []
        for root in ready:
            root.go()
        # What they sent goes out now, one write per connection, rather than
        # from the loop's next iteration (after another poll).
        flush_deferred()

    def forget(self, thread: int) -> None:
        """Let the Lua state forget a root that ended (later, if Lua is
        running: a root may end while another one's step cancels it)."""
        if self.stepping:
            self.loop.call_soon(self.forget, thread)
            return
        with contextlib.suppress(lupa.LuaError):
            self.drop(thread)

    def _root_done(self, root: _Root) -> None:
        self._running.discard(root)
        finished = root.finished
        if not finished.cancelled():
            exc = finished.exception()
            if exc is not None and self._exit is None and self._failure is None:
                if isinstance(exc, ScriptExit):
                    self._exit = exc.code
                elif isinstance(exc, LuaError):
                    self._failure = exc
                else:
                    self._failure = LuaError(f"internal error: {exc!r}", value=exc)
                for other in list(self._running):
                    other.cancel()
        if not self._running and self._idle is not None and not self._idle.done():
            self._idle.set_result(None)


async def run_file(
    path: str,
    *args: str | bytes,
    sandbox: bool = False,
    max_memory: int | None = None,
    slice: float | None = DEFAULT_SLICE,
    cpu_limit: float | None = None,
) -> ScriptResult:
    """Run the Lua script at `path` on the running loop (see `Script` and `Script.run`).

    Example::

        result = await aioluasock.lua.run_file("server.lua", "8080")
    """
    script = Script.from_file(
        path, tuple(args), sandbox=sandbox, max_memory=max_memory, slice=slice, cpu_limit=cpu_limit
    )
    return await script.run()


async def run_string(
    source: str | bytes,
    *args: str | bytes,
    chunkname: str = "=(string)",
    sandbox: bool = False,
    max_memory: int | None = None,
    slice: float | None = DEFAULT_SLICE,
    cpu_limit: float | None = None,
) -> ScriptResult:
    """Run a chunk of Lua source on the running loop (see `Script` and `Script.run`)."""
    script = Script(
        source,
        chunkname,
        tuple(args),
        sandbox=sandbox,
        max_memory=max_memory,
        slice=slice,
        cpu_limit=cpu_limit,
    )
    return await script.run()
