"""The bridge as an embedding API and a command: results, errors, sandbox,
cancellation, concurrency with Python tasks, and the 200-client echo server."""

from __future__ import annotations

import asyncio
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from aioluasock.lua import LuaError, LuaSyntaxError, Script, ScriptResult, run_file, run_string

ECHO = Path(__file__).parent.parent / "benchmarks" / "servers" / "lua_echo.lua"


@pytest.mark.asyncio
async def test_results_and_arguments() -> None:
    result = await run_string("return 1, 2.5, 'x', nil, {a = 1}, ...", "p", "q")
    assert result == ScriptResult(0, (1, 2.5, b"x", None, {b"a": 1}, b"p", b"q"))
    result = await run_string("return arg[0], arg[1], #arg", "one", chunkname="=name")
    assert result.values == (b"name", b"one", 1)


@pytest.mark.asyncio
async def test_os_exit_ends_the_script_not_the_host() -> None:
    assert (await run_string("os.exit(7); error('not reached')")).status == 7
    assert (await run_string("os.exit(true)")).status == 0
    assert (await run_string("os.exit(false)")).status == 1
    # Inside pcall and a coroutine: still the end of the script.
    code = "pcall(function() coroutine.wrap(function() os.exit(4) end)() end); error('not reached')"
    assert (await run_string(code)).status == 4


@pytest.mark.asyncio
async def test_runtime_error_has_message_and_traceback() -> None:
    with pytest.raises(LuaError) as info:
        await run_string("local function f() error('boom') end\nf()", chunkname="@t.lua")
    assert info.value.message == "t.lua:1: boom"
    assert "stack traceback:" in info.value.traceback
    assert "in local 'f'" in info.value.traceback or "in function" in info.value.traceback


@pytest.mark.asyncio
async def test_non_string_error_values_are_kept() -> None:
    with pytest.raises(LuaError) as info:
        await run_string("error({code = 42})")
    assert info.value.message == "(error object is a table value)"
    assert info.value.value is not None
    with pytest.raises(LuaError) as info:
        await run_string("error(setmetatable({}, {__tostring = function() return 'custom' end}))")
    assert info.value.message == "custom"
    with pytest.raises(LuaError) as info:
        await run_string("error(12)")
    assert info.value.message == "12"


@pytest.mark.asyncio
async def test_syntax_error() -> None:
    with pytest.raises(LuaSyntaxError) as info:
        await run_string("x = = 1", chunkname="@bad.lua")
    assert info.value.message.startswith("bad.lua:1:")
    assert "unexpected symbol" in info.value.message


@pytest.mark.asyncio
async def test_sandbox_has_no_io_os_load_or_python() -> None:
    code = """
    local names = {}
    for _, n in ipairs({'io', 'os', 'load', 'loadfile', 'dofile', 'debug', 'package', 'python'}) do
      names[#names + 1] = n .. '=' .. type(_G[n])
    end
    local ok, err = pcall(require, 'io')
    local socket = require 'socket'
    return table.concat(names, ' '), ok, err, type(socket.tcp)
    """
    result = await run_string(code, sandbox=True)
    assert result.values[0] == (
        b"io=nil os=nil load=nil loadfile=nil dofile=nil debug=nil package=nil python=nil"
    )
    assert result.values[1] is False
    assert b"not found" in result.values[2]  # type: ignore[operator]
    assert result.values[3] == b"function"
    with pytest.raises(LuaSyntaxError):
        await run_string(b"\x1bLua", sandbox=True)


@pytest.mark.asyncio
async def test_python_objects_are_unreachable() -> None:
    # Even with `debug`, the bridge's Python functions refuse attribute access.
    code = """
    local socket = require 'socket'
    assert(python == nil and package.loaded.python == nil)
    local f = debug.getinfo(socket.tcp, 'u')
    local found, errors = 0, {}
    for i = 1, f.nups do
      local name, value = debug.getupvalue(socket.tcp, i)
      if type(value) == 'function' then
        for j = 1, 10 do
          local _, b = debug.getupvalue(value, j)
          if type(b) == 'table' and b.tcp then
            found = found + 1
            local ok, err = pcall(function() return b.tcp.__globals__ end)
            errors[#errors + 1] = tostring(ok) .. ':' .. tostring(err)
          end
        end
      end
    end
    return found, table.concat(errors, ',')
    """
    result = await run_string(code)
    found, errors = result.values
    assert found >= 1  # type: ignore[operator]
    assert b"true" not in errors  # type: ignore[operator]
    assert b"not accessible" in errors  # type: ignore[operator]


@pytest.mark.asyncio
async def test_memory_cap() -> None:
    with pytest.raises(LuaError) as info:
        await run_string(
            "local t = {} for i = 1, 1e8 do t[i] = ('x'):rep(100) .. i end", max_memory=20_000_000
        )
    assert "not enough memory" in info.value.message


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


@pytest.mark.asyncio
async def test_cancelling_an_infinite_wait_closes_the_sockets() -> None:
    code = """
    local socket = require 'socket'
    local srv = assert(socket.bind('127.0.0.1', ...))
    srv:accept():close()           -- the test's probe connection
    local c = socket.connect('127.0.0.1', ...)
    local a = srv:accept()
    return a:receive()             -- nobody ever sends
    """
    port = _free_port()
    task = Script(code, args=(str(port),)).start()
    for _ in range(200):
        await asyncio.sleep(0.01)
        if await _connectable(port):
            break
    await asyncio.sleep(0.1)
    assert not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not await _connectable(port)


@pytest.mark.asyncio
async def test_sockets_left_open_are_closed_at_the_end() -> None:
    result = await run_string(
        "local s = require 'socket'; local srv = s.bind('127.0.0.1', 0); "
        "local _, p = srv:getsockname(); return p"
    )
    port = int(result.values[0])  # type: ignore[call-overload]
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)


@pytest.mark.asyncio
async def test_many_scripts_each_in_its_own_state() -> None:
    code = "local n = ... ; counter = (counter or 0) + n; require('socket').sleep(0.05); return counter"
    results = await asyncio.gather(*(run_string(code, str(i)) for i in range(20)))
    assert [r.values[0] for r in results] == list(range(20))


@pytest.mark.asyncio
async def test_a_timer_keeps_firing_while_lua_does_io() -> None:
    code = """
    local socket = require 'socket'
    local srv = assert(socket.bind('127.0.0.1', 0))
    local _, port = srv:getsockname()
    local c = assert(socket.connect('127.0.0.1', port))
    local a = srv:accept()
    local total = 0
    local t0 = socket.gettime()
    while socket.gettime() - t0 < 0.6 do
      c:send(string.rep('x', 1000) .. '\\n')
      total = total + #a:receive()
      socket.sleep(0.001)
    end
    c:close(); a:close(); srv:close()
    return total
    """
    loop = asyncio.get_running_loop()
    late: list[float] = []

    async def ticker() -> None:
        for _ in range(10):
            due = loop.time() + 0.05
            await asyncio.sleep(0.05)
            late.append(loop.time() - due)

    result, _ = await asyncio.gather(asyncio.gather(run_string(code), run_string(code)), ticker())
    assert all(r.values[0] > 0 for r in result)  # type: ignore[operator]
    assert max(late) < 0.05, late


@pytest.mark.asyncio
async def test_spawn_wait_cancel_waitall() -> None:
    code = """
    local aio = require 'aioluasock'
    local log = {}
    local t1 = aio.spawn(function(x) aio.sleep(0.05); log[#log + 1] = 'a'; return x * 2, 'done' end, 21)
    local t2 = aio.spawn(function() aio.sleep(10) end)
    local t3 = aio.spawn(function() aio.sleep(0.01); log[#log + 1] = 'b' end)
    local ok, v, w = aio.wait(t1)
    local cancelled = aio.cancel(t2)
    local ok2, err2 = t2:wait()
    aio.waitall()
    return ok, v, w, cancelled, ok2, err2, table.concat(log, ',')
    """
    result = await run_string(code)
    assert result.values == (True, 42, b"done", True, False, b"cancelled", b"b,a")


@pytest.mark.asyncio
async def test_an_error_in_a_spawned_task_ends_the_script() -> None:
    code = """
    local aio = require 'aioluasock'
    aio.spawn(function() aio.sleep(0.01); error('in task') end)
    aio.sleep(5)
    """
    start = time.monotonic()
    with pytest.raises(LuaError) as info:
        await run_string(code, chunkname="@spawn.lua")
    assert info.value.message == "spawn.lua:3: in task"
    assert time.monotonic() - start < 2


@pytest.mark.asyncio
async def test_two_coroutines_receiving_on_one_socket_is_a_lua_error() -> None:
    code = """
    local socket, aio = require 'socket', require 'aioluasock'
    local srv = socket.bind('127.0.0.1', 0)
    local _, port = srv:getsockname()
    local c = socket.connect('127.0.0.1', port)
    local a = srv:accept()
    local t = aio.spawn(function() return a:receive() end)
    aio.sleep(0.05)
    local ok, err = pcall(a.receive, a)
    c:send('hi\\n')
    local _, line = aio.wait(t)
    return ok, err, line
    """
    result = await run_string(code)
    assert result.values[0] is False
    assert b"already receiving" in result.values[1]  # type: ignore[operator]
    assert result.values[2] == b"hi"


@pytest.mark.asyncio
async def test_echo_server_serves_200_concurrent_clients(capfd: pytest.CaptureFixture[str]) -> None:
    port = _free_port()
    task = Script.from_file(str(ECHO), (str(port),)).start()
    for _ in range(200):
        await asyncio.sleep(0.01)
        if await _connectable(port):
            break

    async def client(i: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for k in range(5):
            writer.write(b"hello %d %d\n" % (i, k))
            await writer.drain()
            assert await reader.readline() == b"hello %d %d\n" % (i, k)
        writer.close()
        await writer.wait_closed()

    await asyncio.gather(*(client(i) for i in range(200)))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert capfd.readouterr().out == f"READY {port}\n"


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aioluasock", "run", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=cwd,
    )


def test_cli_exit_codes_errors_and_args(tmp_path: Path) -> None:
    script = tmp_path / "s.lua"
    script.write_text(
        "#!/usr/bin/env lua\nprint(arg[0], arg[1], arg[-1], select('#', ...), X)\nos.exit(tonumber(arg[1]))\n"
    )
    done = _cli("-e", "X=5", str(script), "3", cwd=tmp_path)
    assert done.returncode == 3
    assert done.stdout == f"{script}\t3\tX=5\t1\t5\n"
    bad = tmp_path / "bad.lua"
    bad.write_text("local x = \nerror('late')\n")
    done = _cli(str(bad))
    assert done.returncode == 1 and "bad.lua:2:" in done.stderr
    boom = tmp_path / "boom.lua"
    boom.write_text("local function f()\n  error('boom')\nend\nf()\n")
    done = _cli("boom.lua", cwd=tmp_path)
    assert done.returncode == 1
    assert "aioluasock: boom.lua:2: boom" in done.stderr and "stack traceback:" in done.stderr
    done = _cli(str(tmp_path / "missing.lua"))
    assert done.returncode == 1 and "cannot open" in done.stderr
    done = _cli("-e", "print(1 + 1)")
    assert done.returncode == 0 and done.stdout == "2\n"
    done = _cli("--loop", "uvloop", "-e", "print(require('socket')._VERSION)")
    assert done.stdout == "LuaSocket 3.0.0\n"


@pytest.mark.asyncio
async def test_run_file(tmp_path: Path) -> None:
    path = tmp_path / "f.lua"
    path.write_text("return arg[0], ...")
    result = await run_file(str(path), "a")
    assert result.values == (str(path).encode(), b"a")


@contextmanager
def _thread_peer(then: Callable[[socket.socket], None]) -> Iterator[int]:
    """A peer on a plain blocking socket in its own thread (so that it answers
    while the loop is not running): it waits for "go\\n", then calls `then`."""
    listener = socket.create_server(("127.0.0.1", 0))
    failures: list[BaseException] = []

    def serve() -> None:
        try:
            conn, _ = listener.accept()
            with conn:
                conn.settimeout(10)
                got = b""
                while not got.endswith(b"go\n"):
                    chunk = conn.recv(16)
                    assert chunk, got
                    got += chunk
                then(conn)
        except BaseException as exc:  # reported by the test, not lost in the thread
            failures.append(exc)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        thread.join(10)
        listener.close()
    assert not thread.is_alive()
    assert not failures, failures


# A script that polls with timeout 0 and never lets the loop run on its own
# (no time slice): it sends "go", then polls until something other than
# "timeout" comes (its partials put together: where the bytes are split is
# up to the kernel). Before that, it checks that polls on the idle
# connection say "timeout".
_POLLER = """
local socket = require "socket"
local c = assert(socket.connect("127.0.0.1", ...))
c:settimeout(0)
for _ = 1, 200 do
  local l, e, p = c:receive()
  assert(l == nil and e == "timeout" and p == "", tostring(e))
end
assert(c:send("go\\n"))
local deadline, polls, partials = socket.gettime() + 10, 0, ""
local line, err, partial
repeat
  line, err, partial = c:receive()
  partials = partials .. (partial or "")
  polls = polls + 1
until line or err ~= "timeout" or socket.gettime() > deadline
local again = select(2, c:receive())
c:close()
return line, err, partials, again, polls
"""


async def _poll_counting_iterations(port: int, poller: str = _POLLER) -> tuple[ScriptResult, int]:
    """Run `poller` against the peer at `port`: its result, and how many
    loop iterations ran meanwhile."""
    loop = asyncio.get_running_loop()
    ticks = 0
    running = True

    def tick() -> None:
        nonlocal ticks
        ticks += 1
        if running:
            loop.call_soon(tick)

    loop.call_soon(tick)
    try:
        result = await asyncio.wait_for(run_string(poller, str(port), slice=None), 30)
    finally:
        running = False
    return result, ticks


@pytest.mark.asyncio
async def test_a_timeout_0_receive_reads_the_kernel_without_a_loop_iteration() -> None:
    """LuaSocket's timeout-0 receive is one recv(): a poll answers at once
    (no trip through the loop per poll), sees what the kernel holds although
    the loop never ran since it came, and its deferred send goes out before
    it says "timeout" (the poller waits for the answer to it)."""

    def answer(conn: socket.socket) -> None:
        conn.sendall(b"answer\n")
        conn.recv(1)  # until the script closes

    with _thread_peer(answer) as port:
        result, ticks = await _poll_counting_iterations(port)
    assert result.values[:4] == (b"answer", None, b"", b"timeout")
    # Connecting and closing take a few iterations; 200 polls yielding took 200 or more.
    assert ticks < 50, ticks


@pytest.mark.asyncio
async def test_a_timeout_0_receive_finds_the_end_of_stream_and_a_reset_itself() -> None:
    """What the poll's own read finds, an end of stream or a reset, is
    reported as the transport's read would have it: "closed", with the
    partial line, and "closed" on the next call."""

    def end(conn: socket.socket) -> None:
        conn.sendall(b"tail")

    def reset(conn: socket.socket) -> None:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    with _thread_peer(end) as port:
        result, _ = await _poll_counting_iterations(port)
    assert result.values[:4] == (None, b"closed", b"tail", b"closed")
    with _thread_peer(reset) as port:
        result, _ = await _poll_counting_iterations(port)
    assert result.values[:4] == (None, b"closed", b"", b"closed")


# A script whose send waits for the end of the loop iteration (batched: its
# connection has bytes it has not read), then polls the peer `s` until `deadline`.
_DEFERRED_SEND = """
    local socket = require "socket"
    local srv = assert(socket.bind("127.0.0.1", 0))
    local _, port = srv:getsockname()
    local c = assert(socket.connect("127.0.0.1", port))
    local s = assert(srv:accept())
    s:settimeout(0)
    s:send("unread\\n")  -- c has bytes it has not read: its next send is deferred
    socket.sleep(0.05)
    assert(c:send("hi\\n"))
    local deadline, line = socket.gettime() + 5
"""


@pytest.mark.asyncio
async def test_a_timeout_0_poll_hands_over_every_connections_deferred_sends() -> None:
    """A send made while its connection has unread bytes waits for the end of
    the loop iteration (batched with the next ones); a script that then polls
    another socket without letting the loop run must still get it out (real
    LuaSocket's send is immediate): the poll's "timeout" flushes them all."""
    code = (
        _DEFERRED_SEND
        + """
    repeat line = s:receive() until line or socket.gettime() > deadline
    return line, (c:receive())
    """
    )
    result = await asyncio.wait_for(run_string(code, slice=None), 20)
    assert result.values == (b"hi", b"unread")


_SELECT_POLLER = """
local socket = require "socket"
local c = assert(socket.connect("127.0.0.1", ...))
c:settimeout(0)
for _ = 1, 200 do
  local r, w, e = socket.select({c}, nil, 0)
  assert(#r == 0 and #w == 0 and e == "timeout", tostring(e))
end
assert(c:send("go\\n"))
local deadline, polls, r, e = socket.gettime() + 10, 0
repeat
  r, _, e = socket.select({c}, nil, 0)
  polls = polls + 1
until #r > 0 or socket.gettime() > deadline
local line, err = c:receive()
c:close()
return r[1] == c, e, line, err, polls
"""


@pytest.mark.asyncio
async def test_a_timeout_0_select_asks_the_kernel_without_a_loop_iteration() -> None:
    """LuaSocket's select with a timeout of 0 is one poll of the descriptors:
    it answers at once (no trip through the loop per call) and sees bytes
    the loop has not read yet, which the receive after it then gets."""

    def answer(conn: socket.socket) -> None:
        conn.sendall(b"answer\n")
        conn.recv(1)  # until the script closes

    with _thread_peer(answer) as port:
        result, ticks = await _poll_counting_iterations(port, _SELECT_POLLER)
    assert result.values[:4] == (True, None, b"answer", None)
    # Connecting and closing take a few iterations; 200 selects yielding took 200 or more.
    assert ticks < 50, ticks


@pytest.mark.asyncio
async def test_a_timeout_0_select_hands_over_every_connections_deferred_sends() -> None:
    """As a timeout-0 receive's "timeout" does: a script that sent while its
    connection had unread bytes (a send deferred to the end of the loop
    iteration) and then polls with select must get its answer."""
    code = (
        _DEFERRED_SEND
        + """
    local r
    repeat r = socket.select({s}, nil, 0) until #r > 0 or socket.gettime() > deadline
    return #r, (s:receive()), (c:receive())
    """
    )
    result = await asyncio.wait_for(run_string(code, slice=None), 20)
    assert result.values == (1, b"hi", b"unread")


@pytest.mark.asyncio
async def test_closing_a_connection_ends_it_for_the_peer_at_once() -> None:
    """LuaSocket's close() ends the connection before it returns: a script
    that closes one end and polls the other right away finds "closed", also
    when the closed end's transport is up (its descriptor goes only in the
    loop's next iteration)."""
    result = await run_string(
        """
        local socket = require("socket")
        local aio = require("aioluasock")
        local srv = assert(socket.bind("127.0.0.1", 0))
        local ip, port = srv:getsockname()
        local c = assert(socket.connect(ip, port))
        local a = assert(srv:accept())
        aio.sleep(0.05)  -- both transports are up
        assert(a:send("tail"))
        aio.sleep(0.05)
        a:close()
        c:settimeout(0)
        local got = table.pack(c:receive())
        c:close()
        srv:close()
        return table.unpack(got, 1, got.n)
        """
    )
    assert result.values == (None, b"closed", b"tail")


@pytest.mark.asyncio
async def test_tasks_cancelled_while_parked_in_receive_and_select_leave_their_sockets_usable() -> None:
    """A task waiting in a receive or a select waits without an asyncio task
    of its own; cancelling it must undo that wait: the socket takes another
    receiver, and a select no longer wakes the cancelled task."""
    code = """
    local socket, aio = require 'socket', require 'aioluasock'
    local srv = socket.bind('127.0.0.1', 0)
    local ip, port = srv:getsockname()
    local c1, c2 = socket.connect(ip, port), socket.connect(ip, port)
    local a1, a2 = srv:accept(), srv:accept()
    local reached = {}
    local r = aio.spawn(function() a1:receive(); reached[#reached + 1] = 'receive' end)
    local s = aio.spawn(function() socket.select({a2}, nil); reached[#reached + 1] = 'select' end)
    local t = aio.spawn(function() socket.select({a2}, nil, 30); reached[#reached + 1] = 'timed select' end)
    aio.sleep(0.05)
    local cancelled = {aio.cancel(r), aio.cancel(s), aio.cancel(t), aio.cancel(r)}
    c1:send('one\\n')
    c2:send('two\\n')
    local line1 = a1:receive()
    local ready = socket.select({a2}, nil, 5)
    local line2 = a2:receive()
    aio.sleep(0.05)
    local rw = {r:wait()}
    return line1, #ready, line2, #reached, rw[1], rw[2], table.unpack(cancelled)
    """
    result = await run_string(code)
    assert result.values == (b"one", 1, b"two", 0, False, b"cancelled", True, True, True, False)


@pytest.mark.asyncio
async def test_a_task_cancelled_while_it_runs_ends_at_its_next_wait() -> None:
    """As an asyncio task: a cancel made while the task runs (by itself)
    takes effect where it next waits; one that returns first ends cancelled."""
    code = """
    local aio = require 'aioluasock'
    local log = {}
    local t1, t2
    t1 = aio.spawn(function()
      aio.cancel(t1)
      log[#log + 1] = 'after cancel'
      aio.sleep(0.01)
      log[#log + 1] = 'after the wait'
    end)
    t2 = aio.spawn(function() aio.cancel(t2); return 'returned' end)
    local a = {t1:wait()}
    local b = {t2:wait()}
    return a[1], a[2], b[1], b[2], table.concat(log, ',')
    """
    result = await run_string(code)
    assert result.values == (False, b"cancelled", False, b"cancelled", b"after cancel")


@pytest.mark.asyncio
async def test_a_select_with_a_timeout_waits_for_it_or_for_the_first_change() -> None:
    code = """
    local socket, aio = require 'socket', require 'aioluasock'
    local srv = socket.bind('127.0.0.1', 0)
    local ip, port = srv:getsockname()
    local c = socket.connect(ip, port)
    local a = srv:accept()
    local start = socket.gettime()
    local r, w, err = socket.select({a}, nil, 0.2)
    local waited = socket.gettime() - start
    aio.spawn(function() aio.sleep(0.05); c:send('x\\n') end)
    start = socket.gettime()
    local r2 = socket.select({a, srv}, nil, 10)
    local woken = socket.gettime() - start
    return #r, #w, err, waited >= 0.19 and waited < 2, r2[1] == a, #r2, woken < 2
    """
    result = await run_string(code)
    assert result.values == (0, 0, b"timeout", True, True, 1, True)


@pytest.mark.asyncio
async def test_selects_with_short_timeouts_all_time_out() -> None:
    """uvloop may run a timer a little before `loop.time()` reaches its
    deadline: a select whose timer fired has timed out, whatever the clock
    says (it waited forever when it looked at the clock)."""
    code = """
    local socket = require 'socket'
    local srv = socket.bind('127.0.0.1', 0)
    local ip, port = srv:getsockname()
    local c = socket.connect(ip, port)
    local a = srv:accept()
    local timeouts = 0
    for i = 1, 60 do
      local r, w, err = socket.select({a, srv}, nil, 0.0005 + (i % 13) * 0.0007)
      if err == 'timeout' and #r == 0 then timeouts = timeouts + 1 end
    end
    return timeouts
    """
    result = await asyncio.wait_for(run_string(code), 20)
    assert result.values == (60,)


@pytest.mark.asyncio
async def test_accepts_waiting_without_a_task_end_with_a_cancel_or_a_close() -> None:
    """A task waiting in a blocking accept is parked on the server's
    descriptor: a cancel leaves the server to another acceptor, and a close
    of the server ends the wait with "closed"."""
    code = """
    local socket, aio = require 'socket', require 'aioluasock'
    local srv = socket.bind('127.0.0.1', 0)
    local ip, port = srv:getsockname()
    local first = aio.spawn(function() return srv:accept() end)
    aio.sleep(0.05)
    local cancelled = aio.cancel(first)
    local second = aio.spawn(function() return srv:accept() end)
    aio.sleep(0.05)
    local c = socket.connect(ip, port)
    local ok, a = second:wait()
    a:send('hi\\n')
    local line = c:receive()
    local third = aio.spawn(function() return srv:accept() end)
    aio.sleep(0.05)
    srv:close()
    local ok3, none, err = third:wait()
    c:close(); a:close()
    return cancelled, ok, line, ok3, none, err
    """
    result = await run_string(code)
    assert result.values == (True, True, b"hi", True, None, b"closed")
