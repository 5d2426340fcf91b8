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
a new thread inherits its creator's.

Cost: with any count hook set, Lua's VM leaves its fast path and checks the
hook counter at every instruction, so a tight arithmetic loop runs about
twice as slow whatever the count. Hence two ways to place it:

- with a CPU limit, every thread carries it: it is set on the state's main
  thread before the first coroutine exists;
- with only a time slice (the default), the root coroutines (the main chunk
  and each `spawn`ed task, which the driver resumes) carry none. A watchdog
  thread (`_Watchdog`, one per process) looks at the running step every
  half slice (at most every `TICK_MIN`); once one has run past its slice,
  it sets the hook on that step's root, to fire at its next instruction
  (lupa runs Lua without the GIL, so the watchdog runs meanwhile;
  `lua_sethook` is made to be called asynchronously, as Lua's own
  interpreter does from its SIGINT handler, though from a signal handler the
  interrupted thread stands still while here it runs on: Lua's
  "reasonable assumptions" about atomic pointer writes hold on the
  platforms CPython runs on). A root carrying a hook of the script's own
  (`debug.sethook`) is left alone, as is that hook.
  The watchdog cannot know which of the script's own coroutines is running
  inside a root, so those carry the count hook from their creation
  (`hook_thread`, called by the bridge's `coroutine.create`/`wrap`).
  Sockets-and-spawn scripts thus run unhooked; Copas-style ones, whose work
  is in their own coroutines, as before.
  When no step of any watched script has begun for `DOZE_AFTER` seconds (an
  idle server), the watchdog stops waking and waits until a step begins
  (`Budget.begin` wakes it): an idle process does not wake every few
  milliseconds for nothing.

`slice=None` and no CPU limit sets no hook at all.
"""

from __future__ import annotations

import ctypes
import functools
import threading
import time
import weakref
from typing import Final, final

import lupa.lua54 as lupa

__all__ = ["CHECK", "LIMIT_MESSAGE", "Budget", "available"]

CHECK: Final = 10_000
"""VM instructions between two calls of the hook (about 20-100 µs of Lua)."""

TICK_MIN: Final = 0.001
"""The watchdog looks at the steps every half slice, but not more often than this."""

DOZE_AFTER: Final = 1.0
"""Seconds without a step before the watchdog waits for one instead of ticking."""

_dozing = False
"""The watchdog waits for a step (read by `Budget.begin`, once per step)."""

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
        lib.lua_sethook, lib.lua_gethook  # noqa: B018  (present, or AttributeError below)
        yieldk = lib.lua_yieldk
        isyieldable, absindex = lib.lua_isyieldable, lib.lua_absindex
        getfield, pcallk, settop = lib.lua_getfield, lib.lua_pcallk, lib.lua_settop
    except (OSError, AttributeError, TypeError):
        return None
    pointer, integer = ctypes.c_void_p, ctypes.c_int
    _type_hooks(lib)
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


def _type_hooks(lib: ctypes.CDLL) -> None:
    lib.lua_sethook.argtypes = [ctypes.c_void_p, _HOOK_TYPE, ctypes.c_int, ctypes.c_int]
    lib.lua_sethook.restype = None
    lib.lua_gethook.argtypes = [ctypes.c_void_p]
    lib.lua_gethook.restype = ctypes.c_void_p


@functools.cache
def _holding_gil() -> ctypes.PyDLL:
    """`lua_sethook` and `lua_gethook` for the watchdog: called with the GIL
    held (`PyDLL`), so that the step it checked cannot end (and its root be
    freed) meanwhile."""
    lib = ctypes.PyDLL(lupa.__file__)
    _type_hooks(lib)
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
        "__weakref__",
        "_active",
        "_armed",
        "_cpu_start",
        "_hook",
        "_hook_address",
        "_lib",
        "_main",
        "_root",
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
        self._root = 0  # the running step's root thread (watched mode)
        self._armed = 0  # the root the watchdog set the hook on, until the step ends
        self._hook = _HOOK_TYPE(self._fire)
        self._hook_address = ctypes.cast(self._hook, ctypes.c_void_p).value

    @property
    def watched(self) -> bool:
        """Roots run unhooked, watched from the watchdog thread (a slice and
        no CPU limit); the script's own coroutines need `hook_thread`."""
        return self.cpu_limit is None

    def install(self, main_thread: int) -> None:
        """Hook the state's main thread (every coroutine created later
        inherits it), or, when `watched`, have the watchdog look at the steps.

        Args:
            main_thread: the address of the state's main `lua_State`.
        """
        if self.cpu_limit is not None and not _registry_index_is_right(self._lib, main_thread):
            raise RuntimeError("this lupa build's Lua registry index is not the one expected")
        self._main = main_thread
        if self.watched:
            _holding_gil()  # looked up here, not in the watchdog thread
            _watchdog().add(self)
        else:
            self._lib.lua_sethook(main_thread, self._hook, _LUA_MASKCOUNT, CHECK)

    def uninstall(self) -> None:
        """Remove the hooks: the state's last code (finalizers run when lupa
        closes it) must not call back into a callback gone by then."""
        if self._main:
            if self.watched:
                _watchdog().discard(self)
            else:
                self._lib.lua_sethook(self._main, _HOOK_TYPE(), 0, 0)
            self._main = 0

    def hook_thread(self, address: bytes) -> None:
        """Give a coroutine the script created (`"%p"` of it) the count hook."""
        self._lib.lua_sethook(int(address, 16), self._hook, _LUA_MASKCOUNT, CHECK)

    def begin(self, root: int = 0) -> None:
        """A step of the root coroutine at address `root` starts."""
        self._step_start = time.perf_counter()
        if self.cpu_limit is not None:
            self._cpu_start = time.thread_time()
        self._root = root
        self._active = True
        if _dozing:
            _watchdog().wake()

    def end(self) -> None:
        """The step ended; count its CPU time."""
        self._active = False
        if self._armed:
            # The watchdog's hook did not fire (the root was inside one of
            # the script's own coroutines, or in a C call): take it back.
            self._unarm(self._armed)
        if self.cpu_limit is not None:
            self.cpu_used += time.thread_time() - self._cpu_start
            if self.cpu_used > self.cpu_limit:
                self.exceeded = True

    def message(self) -> str:
        """The text of the error a script ends with past its limit."""
        return f"{LIMIT_MESSAGE} ({self.cpu_limit:g} s of CPU time)"

    def _unarm(self, root: int) -> None:
        self._armed = 0
        # Unless the script has set a hook of its own since (debug.sethook).
        if self._lib.lua_gethook(root) == self._hook_address:
            self._lib.lua_sethook(root, _HOOK_TYPE(), 0, 0)

    def _watch(self, now: float) -> None:
        """The watchdog's look (GIL held): hook the root of a step that has
        run past its slice, to fire at its next instruction."""
        slice_ = self.slice
        if (
            self._active
            and not self._armed
            and self._root
            and slice_ is not None
            and now - self._step_start >= slice_
        ):
            lib = _holding_gil()
            if lib.lua_gethook(self._root):
                return  # a hook of the script's own (debug.sethook): not ours to replace
            self._armed = self._root
            lib.lua_sethook(self._root, self._hook, _LUA_MASKCOUNT, 1)

    # Called by Lua every CHECK instructions of a hooked thread (or at once on
    # a root the watchdog armed). It must not raise (ctypes would only print
    # the exception) and must not raise a Lua error either (a longjmp across
    # the Python frames).
    def _fire(self, state: int, _: int) -> None:
        lib = self._lib
        armed = state == self._armed
        if armed:
            # Once: past here the root is unhooked again, or counts like the others.
            self._unarm(state)
        if not self._active:
            return
        limit = self.cpu_limit
        if self.exceeded or (
            limit is not None and self.cpu_used + (time.thread_time() - self._cpu_start) > limit
        ):
            self.exceeded = True
            self._kill(state)
            if lib.lua_isyieldable(state):
                lib.lua_yieldk(state, 0, 0, None)
            return
        if self.slice is not None and time.perf_counter() - self._step_start >= self.slice:
            if lib.lua_isyieldable(state):
                lib.lua_yieldk(state, 0, 0, None)
            elif armed:
                # Inside a C call that called Lua: try again every CHECK
                # instructions until the root can yield (`end` takes it back).
                self._armed = state
                lib.lua_sethook(state, self._hook, _LUA_MASKCOUNT, CHECK)

    def _kill(self, state: int) -> None:
        lib = self._lib
        # The hooked function's frame has LUA_MINSTACK free slots: pushing
        # one value is safe. Protected, so a memory error cannot escape here.
        if lib.lua_getfield(state, _LUA_REGISTRYINDEX, KILL_KEY) == _LUA_TFUNCTION:
            if lib.lua_pcallk(state, 0, 0, 0, 0, None) != 0:
                lib.lua_settop(state, -2)
        else:
            lib.lua_settop(state, -2)


@final
class _Watchdog:
    """The thread that looks at the watched budgets' steps every half slice."""

    def __init__(self) -> None:
        self._budgets: weakref.WeakSet[Budget] = weakref.WeakSet()
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    def add(self, budget: Budget) -> None:
        with self._changed:
            self._budgets.add(budget)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="aioluasock-slices", daemon=True)
                self._thread.start()
            self._changed.notify()

    def discard(self, budget: Budget) -> None:
        with self._changed:
            self._budgets.discard(budget)

    def wake(self) -> None:
        """A step began while the watchdog dozes: back to ticking."""
        global _dozing
        with self._changed:
            _dozing = False
            self._changed.notify()

    def _run(self) -> None:
        global _dozing
        changed = self._changed
        while True:
            with changed:
                while not self._budgets or _dozing:
                    changed.wait()
                budgets = list(self._budgets)
            tick = max(min((b.slice for b in budgets if b.slice is not None), default=0.01) / 2, TICK_MIN)
            now = time.perf_counter()
            for budget in budgets:
                budget._watch(now)
            if all(not b._active and now - b._step_start >= DOZE_AFTER for b in budgets):
                # Doze. The flag is set before the steps are looked at again
                # and `begin` marks its step active before it reads the flag:
                # a step that begins meanwhile is seen here or wakes us.
                _dozing = True
                if any(b._active for b in budgets):
                    _dozing = False
            del budgets
            if not _dozing:
                time.sleep(tick)


@functools.cache
def _watchdog() -> _Watchdog:
    return _Watchdog()
