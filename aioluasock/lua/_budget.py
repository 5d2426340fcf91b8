"""Time slices and the CPU limit of a script: a Lua count hook.

A Lua script runs inside `step()` calls made by its driver task; while a step
runs, nothing else on the loop does. A script that computes without making a
socket call that waits would keep the loop to itself, so every Lua thread of
the script carries a count hook that fires every `CHECK` VM instructions:

- past the time slice (wall time since the step began), the hook *yields*
  the running coroutine with no values. Lua 5.4 lets a count hook yield when
  it is a C function calling `lua_yield(L, 0)`; a Lua function given to
  `debug.sethook` cannot (its call is a C-call boundary). `bridge.lua` tells
  such a yield from a script's own `coroutine.yield()` (whose top frame is the
  C function `yield`), turns it into a zero-second sleep request and passes
  it outward through the script's coroutines exactly as it passes socket
  waits, so the driver lets the loop run and resumes the script.
- where the thread cannot yield (inside a C function that called Lua: a
  `string.gsub` callback, a `table.sort` comparator, a `require`d chunk, a
  finalizer), the hook returns and tries again at the next count.
- past the CPU limit, the hook makes the thread fail: it installs, through
  `debug.sethook` from Lua, a hook that raises "CPU time limit exceeded" at
  every instruction of that thread, and yields if it can. The driver, which
  sees the limit passed, never resumes the script; where the thread could not
  yield, the error unwinds it (a `pcall` catches it only to fail at its next
  instruction).

The hook is a C function: a ctypes callback over the Lua C API that
`lupa.lua54` carries (its extension module exports `lua_sethook`,
`lua_yieldk`, ... since Lua is linked into it). Hooks are per Lua thread and
a new thread inherits its creator's, so setting it on the state's main
thread before the first coroutine exists covers every coroutine of the
script.

Cost: with any count hook set, Lua's VM leaves its fast path and checks the
hook counter at every instruction, so a tight arithmetic loop runs about
twice as slow whatever the count; scripts that mostly wait on sockets do not
notice. `slice=None` (and no CPU limit) sets no hook at all.
"""

from __future__ import annotations

import ctypes
import functools
import time
from typing import Final, final

import lupa.lua54 as lupa

__all__ = ["CHECK", "LIMIT_MESSAGE", "Budget", "available"]

CHECK: Final = 10_000
"""VM instructions between two calls of the hook (about 20-100 µs of Lua)."""

LIMIT_MESSAGE: Final = "CPU time limit exceeded"
"""The start of the message of the `LuaError` a script ends with past its limit."""

KILL_KEY: Final = b"aioluasock.kill"
"""The registry field holding the Lua function that makes a thread fail."""

_LUA_MASKCOUNT: Final = 1 << 3
_LUA_TFUNCTION: Final = 6
# LUA_REGISTRYINDEX is -LUAI_MAXSTACK - 1000; Lua 5.4's default LUAI_MAXSTACK
# is 1,000,000. `_library()` checks this against the linked Lua before use.
_LUA_REGISTRYINDEX: Final = -1_001_000

_HOOK_TYPE: Final = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p)


@functools.cache
def _library() -> ctypes.CDLL | None:
    """The Lua C API of `lupa.lua54`, typed; None where it is not reachable."""
    try:
        lib = ctypes.CDLL(lupa.__file__)
        sethook, yieldk = lib.lua_sethook, lib.lua_yieldk
        isyieldable, absindex = lib.lua_isyieldable, lib.lua_absindex
        getfield, pcallk, settop = lib.lua_getfield, lib.lua_pcallk, lib.lua_settop
    except (OSError, AttributeError, TypeError):
        return None
    pointer, integer = ctypes.c_void_p, ctypes.c_int
    sethook.argtypes = [pointer, _HOOK_TYPE, integer, integer]
    sethook.restype = None
    yieldk.argtypes = [pointer, integer, ctypes.c_ssize_t, pointer]
    yieldk.restype = integer
    isyieldable.argtypes = [pointer]
    isyieldable.restype = integer
    absindex.argtypes = [pointer, integer]
    absindex.restype = integer
    getfield.argtypes = [pointer, integer, ctypes.c_char_p]
    getfield.restype = integer
    pcallk.argtypes = [pointer, integer, integer, integer, ctypes.c_ssize_t, pointer]
    pcallk.restype = integer
    settop.argtypes = [pointer, integer]
    settop.restype = None
    return lib


def available() -> bool:
    """Whether scripts can be given a time slice or a CPU limit here."""
    return _library() is not None


_registry_checked: bool | None = None


def _registry_index_is_right(lib: ctypes.CDLL, state: int) -> bool:
    # lua_absindex returns a pseudo-index unchanged and turns a stack index
    # into a positive one, touching no memory: the registry index is right
    # when it is the greatest pseudo-index. Once per process: it is a
    # constant of the Lua build.
    global _registry_checked
    if _registry_checked is None:
        _registry_checked = bool(
            lib.lua_absindex(state, _LUA_REGISTRYINDEX) == _LUA_REGISTRYINDEX
            and lib.lua_absindex(state, _LUA_REGISTRYINDEX + 1) != _LUA_REGISTRYINDEX + 1
        )
    return _registry_checked


@final
class Budget:
    """The time slice and CPU limit of one script (one Lua state).

    The driver calls `begin` and `end` around every step; the hook reads
    what they record. Outside a step the hook does nothing.

    Args:
        slice: wall-clock seconds a step may run before the script yields to
            the loop (None: never forced).
        cpu_limit: CPU seconds the script's steps may use in all (None: no limit).
    """

    __slots__ = (
        "_active",
        "_cpu_start",
        "_hook",
        "_lib",
        "_main",
        "_step_start",
        "cpu_limit",
        "cpu_used",
        "exceeded",
        "slice",
    )

    def __init__(self, slice: float | None, cpu_limit: float | None) -> None:
        lib = _library()
        if lib is None:
            raise RuntimeError("this lupa build does not expose the Lua C API a time slice needs")
        self._lib = lib
        self.slice = slice
        self.cpu_limit = cpu_limit
        self.cpu_used = 0.0
        self.exceeded = False
        self._active = False
        self._step_start = 0.0
        self._cpu_start = 0.0
        self._main = 0
        self._hook = _HOOK_TYPE(self._fire)

    def install(self, main_thread: int) -> None:
        """Hook the state's main thread (every coroutine created later inherits it).

        Args:
            main_thread: the address of the state's main `lua_State`.
        """
        if self.cpu_limit is not None and not _registry_index_is_right(self._lib, main_thread):
            raise RuntimeError("this lupa build's Lua registry index is not the one expected")
        self._main = main_thread
        self._lib.lua_sethook(main_thread, self._hook, _LUA_MASKCOUNT, CHECK)

    def uninstall(self) -> None:
        """Remove the main thread's hook: the state's last code (finalizers run
        when lupa closes it) must not call back into a callback gone by then."""
        if self._main:
            self._lib.lua_sethook(self._main, _HOOK_TYPE(), 0, 0)
            self._main = 0

    def begin(self) -> None:
        """A step starts."""
        self._step_start = time.perf_counter()
        if self.cpu_limit is not None:
            self._cpu_start = time.thread_time()
        self._active = True

    def end(self) -> None:
        """The step ended; count its CPU time."""
        self._active = False
        if self.cpu_limit is not None:
            self.cpu_used += time.thread_time() - self._cpu_start
            if self.cpu_used > self.cpu_limit:
                self.exceeded = True

    def message(self) -> str:
        """The text of the error a script ends with past its limit."""
        return f"{LIMIT_MESSAGE} ({self.cpu_limit:g} s of CPU time)"

    # Called by Lua every CHECK instructions of any thread of the state. It
    # must not raise (ctypes would only print the exception) and must not
    # raise a Lua error either (a longjmp across the Python frames).
    def _fire(self, state: int, _: int) -> None:
        if not self._active:
            return
        lib = self._lib
        limit = self.cpu_limit
        if self.exceeded or (
            limit is not None and self.cpu_used + (time.thread_time() - self._cpu_start) > limit
        ):
            self.exceeded = True
            self._kill(state)
            if lib.lua_isyieldable(state):
                lib.lua_yieldk(state, 0, 0, None)
            return
        if (
            self.slice is not None
            and time.perf_counter() - self._step_start >= self.slice
            and lib.lua_isyieldable(state)
        ):
            lib.lua_yieldk(state, 0, 0, None)

    def _kill(self, state: int) -> None:
        lib = self._lib
        # The hooked function's frame has LUA_MINSTACK free slots: pushing
        # one value is safe. Protected, so a memory error cannot escape here.
        if lib.lua_getfield(state, _LUA_REGISTRYINDEX, KILL_KEY) == _LUA_TFUNCTION:
            if lib.lua_pcallk(state, 0, 0, 0, 0, None) != 0:
                lib.lua_settop(state, -2)
        else:
            lib.lua_settop(state, -2)
