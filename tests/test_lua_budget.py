"""Bridged Lua scripts cannot freeze the loop or the host: time slices, the
CPU limit, and the sandbox's walls, one escape attempt at a time."""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import socket
import subprocess
import sys
from collections.abc import Awaitable
from typing import Final, TypeVar

import pytest

from aioluasock.lua import LuaError, LuaSyntaxError, Script, _budget, run_string

T = TypeVar("T")

# A loop that computes for `...` seconds of wall-clock time and never waits:
# without the time slice it holds the loop the whole time.
BUSY: Final = """
local socket = require 'socket'
local seconds = tonumber((...))
local t0, n = socket.gettime(), 0
while socket.gettime() - t0 < seconds do
  for _ = 1, 10000 do n = n + 1 end
end
return n
"""


async def _ticks_while(work: Awaitable[T]) -> tuple[T, float, int]:
    """Await `work` while a task sleeps 10 ms at a time; returns its result,
    the longest time between two of the task's ticks, and their number."""
    loop = asyncio.get_running_loop()
    stamps = [loop.time()]
    done = False

    async def ticker() -> None:
        while not done:
            await asyncio.sleep(0.01)
            stamps.append(loop.time())

    task = loop.create_task(ticker())
    try:
        result = await work
    finally:
        done = True
        stamps.append(loop.time())
        await task
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    return result, max(gaps), len(stamps) - 2


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _connectable(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    writer.close()
    await writer.wait_closed()
    return True


# -- time slices ---------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_busy_script_shares_the_loop() -> None:
    # Two busy scripts at once, for 0.7 s each: the ticker keeps ticking (a
    # slice is 10 ms; 0.4 s allows for a loaded machine) and both finish.
    both = asyncio.gather(run_string(BUSY, "0.7"), run_string(BUSY, "0.7"))
    results, gap, ticks = await _ticks_while(both)
    assert all(isinstance(r.values[0], int) and r.values[0] > 0 for r in results)
    assert gap < 0.4, gap
    assert ticks >= 5, ticks
    # The same without a time slice: the loop is frozen the whole time,
    # which is what the bound above tells apart.
    _, gap, _ = await _ticks_while(run_string(BUSY, "0.7", slice=None))
    assert gap >= 0.65, gap


@pytest.mark.asyncio
async def test_the_watchdog_dozes_while_no_step_runs_and_still_slices_after(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A script that waits (no step runs) long enough for the watchdog to
    # stop ticking, then computes: its first step wakes the watchdog, which
    # still slices it.
    monkeypatch.setattr(_budget, "DOZE_AFTER", 0.05)
    script = """
    local socket = require 'socket'
    socket.sleep(0.5)
    """ + BUSY.replace("(...)", "'0.5'")
    loop = asyncio.get_running_loop()
    dozed = []

    async def watch() -> None:
        for _ in range(40):
            await asyncio.sleep(0.01)
            dozed.append(_budget._dozing)

    watcher = loop.create_task(watch())
    result, gap, ticks = await _ticks_while(run_string(script))
    await watcher
    assert isinstance(result.values[0], int) and result.values[0] > 0
    assert any(dozed), "the watchdog kept ticking while nothing ran"
    assert not _budget._dozing  # the busy step woke it
    assert gap < 0.4, gap  # and it sliced that step (0.5 s unsliced)
    assert ticks >= 5, ticks


@pytest.mark.asyncio
async def test_busy_code_in_nested_coroutines_and_spawned_tasks_yields_too() -> None:
    code = BUSY.replace("return n", "return n, 'done'")
    wrapper = f"""
    local aio = require 'aioluasock'
    local busy = load({code!r})
    local task = aio.spawn(function()
      local co = coroutine.create(function()
        return coroutine.wrap(function() return busy('0.4') end)()
      end)
      return coroutine.resume(co)
    end)
    local ok, resumed, n, word = aio.wait(task)
    return ok, resumed, n > 0, word, coroutine.status(coroutine.running())
    """
    result, gap, _ = await _ticks_while(run_string(wrapper))
    assert result.values == (True, True, True, b"done", b"running")
    assert gap < 0.4, gap


_HOOKS = """
local aio = require 'aioluasock'
local function hook()
  local f, mask, count = debug.gethook()
  return tostring(f) .. ' ' .. tostring(mask) .. ' ' .. tostring(count)
end
local main = hook()
local _, nested = coroutine.resume(coroutine.create(hook))
local inner = coroutine.wrap(function() return coroutine.wrap(hook)() end)()
local _, task = aio.wait(aio.spawn(hook))
return main, task, nested, inner
"""


@pytest.mark.asyncio
async def test_with_only_a_slice_the_roots_run_unhooked() -> None:
    # A count hook slows every Lua instruction down (about 2x in a tight
    # loop). With a time slice alone the main chunk and spawned tasks carry
    # none (the watchdog thread hooks one that runs past its slice); the
    # script's own coroutines, which it cannot see, carry it from birth.
    hooked, none = b"external hook  10000", b"nil nil nil"
    result = await run_string(_HOOKS)
    assert result.values == (none, none, hooked, hooked)
    result = await run_string(_HOOKS, cpu_limit=60)
    assert result.values == (hooked, hooked, hooked, hooked)
    result = await run_string(_HOOKS, slice=None)
    assert result.values == (none, none, none, none)


@pytest.mark.asyncio
async def test_the_watchdog_leaves_a_scripts_own_hook_alone() -> None:
    # A script's debug.sethook (a coverage tool, a profiler) keeps working
    # through steps that run past their slice: the watchdog does not replace
    # a hook that is not its own, nor remove it at the step's end.
    code = """
    local n = 0
    debug.sethook(function() n = n + 1 end, "", 1000)
    local function busy(d) local t = os.clock() while os.clock() - t < d do end end
    busy(0.05)
    local before = n
    busy(0.05)
    return debug.gethook() ~= nil, n > before
    """
    assert (await run_string(code)).values == (True, True)


@pytest.mark.asyncio
async def test_a_scripts_own_coroutines_see_only_their_own_yields() -> None:
    # Generators yielding nothing, yielding values, computing long enough to
    # be paused many times in between: the pauses never reach the script.
    code = """
    local gen = coroutine.wrap(function()
      for i = 1, 3 do
        coroutine.yield()
        local s = 0
        for k = 1, 2e6 do s = s + k end
        coroutine.yield(i, s)
      end
      return 'end'
    end)
    local out = {}
    for _ = 1, 7 do
      local r = table.pack(gen())
      out[#out + 1] = r.n .. ':' .. tostring(r[1]) .. ':' .. tostring(r[2])
    end
    local co = coroutine.create(function(a) local b = coroutine.yield(a + 1) return b * 2 end)
    local _, x = coroutine.resume(co, 1)
    local _, y = coroutine.resume(co, 10)
    return table.concat(out, ' '), x, y, coroutine.status(co), coroutine.isyieldable()
    """
    result = await run_string(code, slice=0.0001)
    s = 2_000_001_000_000
    assert result.values == (
        f"0:nil:nil 2:1:{s} 0:nil:nil 2:2:{s} 0:nil:nil 2:3:{s} 1:end:nil".encode(),
        2,
        20,
        b"dead",
        False,
    )


@pytest.mark.asyncio
async def test_slicing_where_lua_cannot_yield_waits_for_the_next_point() -> None:
    # A gsub callback and a sort comparator cannot yield: they run to their
    # end, and the script is paused again after them; the answers are right.
    code = """
    local s = ('abc'):rep(2000):gsub('.', function(c) for _ = 1, 100 do end return c:upper() end)
    local t = {}
    for i = 1, 3000 do t[i] = (i * 7919) % 3001 end
    table.sort(t, function(a, b) for _ = 1, 10 do end return a > b end)
    local n = 0
    for _ = 1, 1e6 do n = n + 1 end
    return #s, s:sub(1, 3), t[1], t[3000], n
    """
    result = await run_string(code, slice=0.0001)
    assert result.values == (6000, b"ABC", 3000, 1, 1_000_000)


@pytest.mark.asyncio
async def test_a_copas_dispatcher_with_a_busy_thread() -> None:
    # Copas 1.x resumes its threads itself (coroutine.create/resume): a
    # thread computing for half a second is paused through them, then the
    # dispatcher serves the clients (that connected in the meantime).
    copas = "/usr/share/lua/5.1/copas.lua"
    if not os.path.exists(copas):  # noqa: ASYNC240  # a test's setup
        message = f"{copas} is missing (apt-get install -y lua-copas lua-coxpcall)"
        if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    code = """
    for _, v in ipairs({ "5.3", "5.2", "5.1" }) do
      package.path = package.path .. ";/usr/share/lua/" .. v .. "/?.lua"
    end
    local socket = require "socket"
    local copas = require "copas"
    local server = assert(socket.bind("127.0.0.1", tonumber((...))))
    local sum, lines = nil, 0
    local function maybe_exit()
      if sum ~= nil and lines >= 6 then os.exit(sum == 450000015000000 and 0 or 3) end
    end
    copas.addserver(server, function(raw)
      local client = copas.wrap(raw)
      while true do
        local line = client:receive("*l")
        if not line or line == "quit" then break end
        lines = lines + 1
        client:send(line .. "\\n")
      end
      raw:close()
      maybe_exit()
    end)
    copas.addthread(function()  -- Copas resumes it at once
      local s = 0
      for i = 1, 3e7 do s = s + i end
      sum = s
      maybe_exit()
    end)
    copas.loop()
    """
    port = _free_port()
    task = Script(code, args=(str(port),)).start()

    async def client(name: str) -> list[bytes]:
        for _ in range(200):
            if await _connectable(port):
                break
            await asyncio.sleep(0.01)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        answers = []
        for i in range(3):
            writer.write(f"{name}{i}\n".encode())
            answers.append(await reader.readline())
        writer.write(b"quit\n")
        await writer.drain()
        writer.close()
        await writer.wait_closed()
        return answers

    async with asyncio.timeout(30):
        answers, gap, _ = await _ticks_while(asyncio.gather(client("a"), client("b"), task))
    assert gap < 0.4, gap
    assert list(answers[:2]) == [[b"a0\n", b"a1\n", b"a2\n"], [b"b0\n", b"b1\n", b"b2\n"]]
    assert answers[2].status == 0


# -- the CPU limit ---------------------------------------------------------------------------

RUNAWAYS: Final = {
    "loop": "while true do end",
    "pcall in a loop": "while true do pcall(function() while true do end end) end",
    "coroutine": "coroutine.wrap(function() while true do end end)()",
    "spawned task": (
        "local aio = require 'aioluasock'; aio.spawn(function() while true do end end); aio.waitall()"
    ),
    "gsub callback": "string.gsub('abc', '.', function() while true do end end)",
    "sort comparator": "table.sort({3, 2, 1}, function() while true do end end)",
    "pcall in a gsub callback": "string.gsub('abc', '.', function() while true do pcall(error, 'x') end end)",
    "xpcall handler": "xpcall(error, function() while true do end end)",
    "xpcall handler in a gsub callback": (
        "string.gsub('x', '.', function()"
        " xpcall(function() while true do end end, function() while true do end end) end)"
    ),
    "__close": "do local x <close> = setmetatable({}, {__close = function() while true do end end}) end",
    "__close of a coroutine that died": """
        coroutine.wrap(function()
          local x <close> = setmetatable({}, {__close = function() while true do end end})
          string.gsub('x', '.', function() while true do end end)
        end)()
    """,
}
# Not listed: a `__gc` metamethod that never returns. Lua runs finalizers with
# hooks off, so nothing interrupts one; the sandbox refuses `__gc` metamethods.


@pytest.mark.asyncio
@pytest.mark.parametrize("case", list(RUNAWAYS))
async def test_cpu_limit_ends_a_runaway_script(case: str) -> None:
    with pytest.raises(LuaError) as info:
        await run_string(RUNAWAYS[case], cpu_limit=0.15)
    assert info.value.message == "CPU time limit exceeded (0.15 s of CPU time)"
    assert not isinstance(info.value, LuaSyntaxError)


@pytest.mark.asyncio
async def test_cpu_limit_closes_the_sockets_and_the_host_goes_on() -> None:
    port = _free_port()
    code = """
    local socket = require 'socket'
    local server = assert(socket.bind('127.0.0.1', tonumber((...))))
    local aio = require 'aioluasock'
    aio.spawn(function() server:accept() end)   -- a task waiting on a socket
    socket.sleep(0.2)
    while true do end
    """
    task = Script(code, args=(str(port),), sandbox=True, cpu_limit=0.2).start()
    await asyncio.sleep(0.1)
    assert await _connectable(port)
    with pytest.raises(LuaError, match="CPU time limit exceeded"):
        await task
    assert not await _connectable(port)
    assert (await run_string("return 1 + 1", sandbox=True, cpu_limit=0.2)).values == (2,)


@pytest.mark.asyncio
async def test_cpu_limit_counts_computing_not_waiting() -> None:
    # 0.4 s asleep under a 0.1 s limit: fine.
    code = "require('socket').sleep(0.4); local n = 0; for i = 1, 1e5 do n = n + i end; return n"
    assert (await run_string(code, cpu_limit=0.1)).values == (5_000_050_000,)


@pytest.mark.asyncio
async def test_cpu_limit_is_the_sum_of_all_tasks_and_slices() -> None:
    # Three tasks computing in slices, interleaved: measured once, then run
    # under a limit of 60% of their total (twice what each one uses).
    code = """
    local aio = require 'aioluasock'
    local t0 = os.clock()
    local function burn() local n = 0 for _ = 1, 5e6 do n = n + 1 end end
    for _ = 1, 3 do aio.spawn(burn) end
    aio.waitall()
    return os.clock() - t0
    """
    total = (await run_string(code, cpu_limit=100)).values[0]
    assert isinstance(total, float) and total > 0
    with pytest.raises(LuaError, match="CPU time limit exceeded"):
        await run_string(code, cpu_limit=0.6 * total)


def test_cli_slice_and_cpu_limit() -> None:
    command = [sys.executable, "-m", "aioluasock", "run"]
    done = subprocess.run(
        [*command, "--cpu-limit", "0.2", "-e", "while true do end"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert b"CPU time limit exceeded (0.2 s of CPU time)" in done.stderr
    done = subprocess.run(
        [*command, "--slice", "0", "-e", "print(1)"], capture_output=True, timeout=60, check=False
    )
    assert (done.returncode, done.stdout) == (0, b"1\n")
    for option in ("--slice", "--cpu-limit"):
        done = subprocess.run(
            [*command, option, "-1", "-e", "print(1)"], capture_output=True, timeout=60, check=False
        )
        assert done.returncode == 1
        assert f"'{option}' needs a number of seconds".encode() in done.stderr


@pytest.mark.asyncio
async def test_slice_and_cpu_limit_arguments_are_checked() -> None:
    for bad in (0, -1, float("nan"), float("inf"), True, "1"):
        with pytest.raises(ValueError, match="slice must be a positive number"):
            Script("return 1", slice=bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="cpu_limit must be a positive number"):
            Script("return 1", cpu_limit=bad)  # type: ignore[arg-type]
    assert (await run_string("return 1", slice=None, cpu_limit=None)).values == (1,)
    assert (await run_string("return 1", slice=1, cpu_limit=5)).values == (1,)


# -- the sandbox's walls ---------------------------------------------------------------------

# Everything a sandboxed script reaches from its globals, the string metatable
# and the modules it may require, with the metatables of all of it: no
# function that leads out (debug, loading, files, processes, the collector,
# Python) and no userdata.
_REACHABLE: Final = """
local forbidden = {}
for name in ([[getregistry getupvalue setupvalue upvalueid upvaluejoin sethook gethook getlocal
  setlocal getinfo getuservalue setuservalue setcstacklimit traceback dump load loadstring loadfile
  dofile collectgarbage execute popen open tmpfile exit getenv rename tmpname loadlib
  searchpath searchers cpath python eval as_attrgetter as_itemgetter as_function iter iterex
  unpacks_tuples setfd]]):gmatch('%S+') do forbidden[name] = true end
local seen, found = {}, {}
local function walk(v, path)
  local t = type(v)
  if (t ~= 'table' and t ~= 'userdata' and t ~= 'function') or seen[v] then return end
  seen[v] = true
  if t == 'userdata' then found[#found + 1] = path end
  local mt = getmetatable(v)
  if mt ~= nil then walk(mt, path .. '<mt>') end
  if t == 'table' then
    for k, x in next, v do
      if forbidden[k] then found[#found + 1] = path .. '.' .. tostring(k) end
      walk(k, path .. '[key]')
      walk(x, path .. '.' .. tostring(k))
    end
  end
end
walk(_G, '_G')
walk(getmetatable(''), 'string<mt>')
for _, name in ipairs({'socket', 'socket.core', 'mime.core', 'aioluasock'}) do
  walk(require(name), name)
end
local n = 0
for _ in pairs(seen) do n = n + 1 end
return table.concat(found, ' '), n
"""

# Each attempt returns what it got; the sandbox must answer as listed.
ESCAPES: Final[dict[str, tuple[str, tuple[object, ...]]]] = {
    "string metatable": (
        """
        local mt = getmetatable('')
        local ok = pcall(setmetatable, '', {})
        return mt.__index == string, ('x').dump, string.dump, mt.__index.dump, ok
        """,
        (True, None, None, None, False),
    ),
    "debug": (
        "local ok, err = pcall(require, 'debug'); return debug, ok, err, package, io, os",
        (None, False, b"module 'debug' not found (sandboxed)", None, None, None),
    ),
    "python": (
        "local ok, err = pcall(require, 'python'); return python, ok, err, rawget(_G, 'python')",
        (None, False, b"module 'python' not found (sandboxed)", None),
    ),
    "collectgarbage": ("return collectgarbage, gcinfo", (None, None)),
    "load": ("return load, loadstring, loadfile, dofile, require('socket').load", (None,) * 5),
    "coroutine: yield from the main chunk": (
        "return pcall(coroutine.yield, 1)",
        (False, b"attempt to yield from outside a coroutine"),
    ),
    "coroutine: resume or close the running root": (
        """
        local me = coroutine.running()
        local a, b = coroutine.resume(me)
        local c, d = pcall(coroutine.close, me)
        return a, b, c, d, coroutine.isyieldable(), coroutine.status(me)
        """,
        (
            False,
            b"cannot resume non-suspended coroutine",
            False,
            b"cannot close a running coroutine",
            False,
            b"running",
        ),
    ),
    "coroutine: close the main task from another": (
        """
        local aio = require 'aioluasock'
        local main = coroutine.running()
        local t = aio.spawn(function()
          return pcall(coroutine.close, main), select(2, pcall(coroutine.close, main)),
            coroutine.resume(main)
        end)
        return aio.wait(t)
        """,
        (True, False, b"cannot close a normal coroutine", False, b"cannot resume non-suspended coroutine"),
    ),
    "coroutine: close one passing a socket wait": (
        """
        local aio, socket = require 'aioluasock', require 'socket'
        local co = coroutine.create(function() socket.sleep(0.1) return 'slept' end)
        aio.spawn(function() socket.sleep(0.02) _G.closing = table.pack(pcall(coroutine.close, co)) end)
        local ok, v = coroutine.resume(co)
        return ok, v, _G.closing[1], _G.closing[2], coroutine.status(co)
        """,
        (True, b"slept", False, b"cannot close a normal coroutine", b"dead"),
    ),
    "coroutine: fake a request": (
        """
        local co = coroutine.wrap(function() coroutine.yield({}, print, 1) return 'back' end)
        local a, b, c = co()
        return type(a), b == print, c, co()
        """,
        (b"table", True, 1, b"back"),
    ),
    "socket userdata": (
        """
        local s = require('socket').tcp()
        local r = table.pack(s.__class__, s.__dict__, s.__init__, rawequal(getmetatable(s), nil),
          pcall(function() return s() end))
        s:close()
        return r[1], r[2], r[3], r[4], r[5]
        """,
        (None, None, None, False, False),
    ),
    "__gc metamethods": (
        """
        local ok, err = pcall(setmetatable, {}, {__gc = function() while true do end end})
        local mt = {}
        setmetatable({}, mt)
        mt.__gc = function() end  -- too late: Lua marks objects at setmetatable only
        return ok, err
        """,
        (False, b"__gc metamethods are not permitted in the sandbox"),
    ),
    "the metatables of sockets and task handles": (
        """
        local aio = require 'aioluasock'
        local s = require('socket').tcp()
        getmetatable(s).__index = {}
        getmetatable(s).__gc = function() while true do end end
        local t = aio.spawn(function() return 1 end)
        local leaked = t.__index
        getmetatable(t).__index = {}
        getmetatable(t).__gc = function() while true do end end
        local ok, v = t:wait()
        return type(s.close), s:close(), leaked, ok, v
        """,
        (b"function", 1.0, None, True, 1),
    ),
    "lupa's metatable, through a hand-called __gc": (
        """
        local socket = require 'socket'
        local s = socket.tcp()
        local gc = getmetatable(s).__gc
        gc(s)
        gc(s)  -- twice: nothing more happens
        local mt = getmetatable(s)
        return mt, socket.tcp():close()
        """,
        (False, 1.0),
    ),
    "socket userdata after a hand-called __gc": (
        """
        local s = require('socket').tcp()
        getmetatable(s).__gc(s)
        local r = {}
        for _, key in ipairs({'__class__', '__dict__', 'close'}) do
          local ok, v = pcall(function() return s[key] end)
          r[#r + 1] = tostring(ok) .. ':' .. type(v)
        end
        r[#r + 1] = tostring((pcall(s)))
        return table.concat(r, ' ')
        """,
        (b"false:string false:string false:string false",),
    ),
    "setfd": (
        "local s = require('socket').tcp(); local ok, err = pcall(s.setfd, s, 0); s:close(); return ok, err",
        (False, b"setfd is not permitted in the sandbox"),
    ),
    "files through socket.unix and ssl": (
        """
        local unix_ok, unix_err = pcall(require, 'socket.unix')
        local ssl_ok, ssl_err = pcall(require, 'ssl')
        return unix_ok, unix_err, ssl_ok, ssl_err
        """,
        (
            False,
            b"module 'socket.unix' not found (sandboxed)",
            False,
            b"module 'ssl' not found (sandboxed)",
        ),
    ),
    "select on a foreign descriptor": (
        """
        local fake = {getfd = function() return 0 end}
        return pcall(require('socket').select, {fake}, nil, 0)
        """,
        (False, b"select: descriptor 0 is not one of the script's sockets (sandbox)"),
    ),
}


@pytest.mark.asyncio
@pytest.mark.parametrize("attempt", list(ESCAPES))
async def test_sandbox_denies(attempt: str) -> None:
    code, expected = ESCAPES[attempt]
    result = await run_string(code, sandbox=True)
    values = tuple(
        re.sub(rb"^\(string\):\d+: ", b"", v) if isinstance(v, bytes) else v for v in result.values
    )
    assert values == expected


@pytest.mark.asyncio
async def test_sandbox_reaches_nothing_that_leads_out() -> None:
    result = await run_string(_REACHABLE, sandbox=True)
    found, count = result.values
    assert found == b""
    assert isinstance(count, int) and count > 100  # the walk did walk


@pytest.mark.asyncio
async def test_sandbox_refuses_binary_chunks() -> None:
    dumped = await run_string("return string.dump(function() return 42 end)")
    binary = dumped.values[0]
    assert isinstance(binary, bytes) and binary.startswith(b"\x1bLua")
    assert (await run_string(binary)).values == (42,)  # outside the sandbox it loads
    with pytest.raises(LuaSyntaxError, match="binary chunk"):
        await run_string(binary, sandbox=True)
    with pytest.raises(LuaSyntaxError, match="binary chunk"):
        await Script(b"return 1", sandbox=True, prelude=(binary,)).run()


@pytest.mark.asyncio
async def test_memory_cap_in_a_tight_loop_leaves_the_host_able_to_go_on() -> None:
    for code in (
        "local t = {} while true do t[#t + 1] = {} end",
        "local s = 'x' while true do s = s .. s end",
        "return ('x'):rep(1 << 26)",
    ):
        with pytest.raises(LuaError) as info:
            await run_string(code, sandbox=True, max_memory=8_000_000, cpu_limit=5)
        assert info.value.message.endswith("not enough memory"), info.value.message
    code = "local t = {} for i = 1, 1e4 do t[i] = i end return #t"
    assert (await run_string(code, sandbox=True, max_memory=8_000_000)).values == (10_000,)
