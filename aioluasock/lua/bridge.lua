-- The Lua half of the aioluasock bridge: LuaSocket 3.1's `socket` table, the
-- `aioluasock` extension module and the coroutine library a script sees.
--
-- Loaded once per Lua state by aioluasock/lua/_runtime.py with one argument,
-- `B`: a table of Python callables (the engine calls, see _bridge.py). The
-- Python objects are kept in upvalues of this chunk only; the script never
-- sees them (and the runtime's attribute filter refuses any attribute access
-- on a Python object it might still reach, through `debug`).
--
-- A call that may wait (connect, accept, receive, send, select, sleep, dns)
-- yields `REQ, python_async_function, args...` up to the Python driver of the
-- script's task, which awaits the engine and resumes the coroutine with the
-- results. Socket calls inside the script's own coroutines reach the driver
-- because this file replaces `coroutine.resume`/`wrap` with versions that
-- pass such yields outward (the technique of Copas and cqueues).
--
-- The time slice (aioluasock/lua/_budget.py) suspends a busy coroutine from a
-- count hook: a yield of no values whose top frame is a Lua function (a
-- script's own `coroutine.yield()` has the C function `yield` on top). Such a
-- pause is turned into a zero-second sleep request and passed outward the
-- same way, so the loop runs its other tasks before the script goes on.

local B = ...

local type, select, error, pairs, tostring, tonumber, rawget = type, select, error, pairs, tostring, tonumber, rawget
local setmetatable, getmetatable, pcall = setmetatable, getmetatable, pcall
local pack, unpack, concat = table.pack, table.unpack, table.concat
local mtype, tointeger, floor, ceil, huge = math.type, math.tointeger, math.floor, math.ceil, math.huge
local sformat, ssub = string.format, string.sub
local co_create, co_resume, co_yield = coroutine.create, coroutine.resume, coroutine.yield
local co_status, co_running, co_isyieldable, co_close = coroutine.status, coroutine.running,
  coroutine.isyieldable, coroutine.close
local dgetinfo, dsetmetatable, dgetmetatable, dtraceback = debug.getinfo, debug.setmetatable,
  debug.getmetatable, debug.traceback
local dsethook = debug.sethook

local REQ = {}    -- tags a yield that is a request to the Python driver
local sandboxed = B.sandbox  -- no descriptor but the script's own sockets'
local killed = false        -- past the CPU limit (see `kill`)
local PAUSE = pack(true, REQ, B.pause)  -- the request a time slice's end becomes
local RAISE = {}  -- first value of a resume that must raise in the requester
local roots = setmetatable({}, { __mode = "k" })    -- coroutines driven by Python tasks
local passing = setmetatable({}, { __mode = "k" })  -- user coroutines passing a request outward

-------------------------------------------------------------------------------
-- lauxlib-style argument errors, raised from Lua with the same text
-------------------------------------------------------------------------------

-- luaL_typeerror's name for a value: the `__name` metafield, else its type.
local function typename(v, present)
  if not present then return "no value" end
  local mt = dgetmetatable(v)
  if mt and type(rawget(mt, "__name")) == "string" then return rawget(mt, "__name") end
  return type(v)
end

-- lauxlib's pushglobalfuncname: the name function `f` has in
-- package.loaded ("coroutine.create", "print"), for a call that gives it
-- none (`pcall(f, ...)`); the shortest, where it has several.
local loaded_modules = package and package.loaded
local function globalname(f)
  if f == nil or loaded_modules == nil then return nil end
  local best
  for modname, mod in pairs(loaded_modules) do
    if type(modname) == "string" and type(mod) == "table" then
      for k, v in pairs(mod) do
        if rawequal(v, f) and type(k) == "string" then
          local name = modname == "_G" and k or modname .. "." .. k
          if best == nil or #name < #best then best = name end
        end
      end
    end
  end
  return best
end

-- luaL_argerror for argument `arg` (counting self) of the public function at
-- stack level `level` as seen from the caller of argerror (2 = the caller).
local function argerror(level, arg, msg)
  local ar = dgetinfo(level, "nf")
  local name = ar and (ar.name or globalname(ar.func))
  if ar and ar.namewhat == "method" then
    arg = arg - 1
    if arg == 0 then
      error(sformat("calling '%s' on bad self (%s)", name, msg), level + 1)
    end
  end
  error(sformat("bad argument #%d to '%s' (%s)", arg, name or "?", msg), level + 1)
end

-- luaL_checklstring: strings, and numbers converted to strings.
local function checkstring(level, arg, v, present)
  local t = type(v)
  if t == "string" then return v end
  if t == "number" then return tostring(v) end
  argerror(level + 1, arg, "string expected, got " .. typename(v, present))
end

local function optstring(level, arg, v, present, default)
  if v == nil then return default end
  return (checkstring(level + 1, arg, v, present))
end

-- luaL_checknumber: numbers and numeric strings.
local function checknumber(level, arg, v, present)
  local n = tonumber(v)
  if n == nil or (type(v) ~= "number" and type(v) ~= "string") then
    argerror(level + 1, arg, "number expected, got " .. typename(v, present))
  end
  return n
end

local function optnumber(level, arg, v, present, default)
  if v == nil then return default end
  return (checknumber(level + 1, arg, v, present))
end

-- C's cast of a double to an integer: truncation toward zero.
local function trunc(n)
  if n ~= n or n == huge or n == -huge then return 0 end
  local i = n >= 0 and floor(n) or ceil(n)
  return tointeger(i) or 0
end

-------------------------------------------------------------------------------
-- Requests to the driver
-------------------------------------------------------------------------------

local function reply(r1, ...)
  if r1 == RAISE then error((...), 0) end
  return r1, ...
end

-- Suspend the running task until the Python coroutine `fn(...)` is done.
local function request(fn, ...)
  return reply(co_yield(REQ, fn, ...))
end

-------------------------------------------------------------------------------
-- The coroutine library the script sees
-------------------------------------------------------------------------------

local coroutine_lib = {}
for k, v in pairs(coroutine) do coroutine_lib[k] = v end

-- `co` yielded nothing: did the time slice's hook suspend it?
local function paused(co)
  local info = dgetinfo(co, 0, "S")
  return info ~= nil and info.what ~= "C"
end

local pass_on

-- What a resume of `co` gave: handed back as it is (no table) unless `co`
-- is suspended with a request or a time slice's pause to pass on.
local function resumed(co, ok, ...)
  if ok and co_status(co) == "suspended" and ((...) == REQ or (select("#", ...) == 0 and paused(co))) then
    return pass_on(co, pack(ok, ...))
  end
  return ok, ...
end

local function resume(co, ...)
  if roots[co] then return false, "cannot resume non-suspended coroutine" end
  return resumed(co, co_resume(co, ...))
end

function pass_on(co, r)
  -- A request yielded inside `co`: pass it on to our own resumer (the driver
  -- in the end), then hand the answer back to `co`.
  while r[1] and co_status(co) == "suspended" do
    if r[2] ~= REQ then
      if r.n ~= 1 or not paused(co) then break end
      -- The end of a time slice. Where we cannot yield (a C function called
      -- us) `co` goes on at once; the hook tries again later.
      if co_isyieldable() then
        r = PAUSE
      else
        r = pack(co_resume(co))
        goto again
      end
    end
    passing[co] = true
    local answer = pack(pcall(co_yield, REQ, unpack(r, 3, r.n)))
    passing[co] = nil
    if not answer[1] then error(answer[2], 0) end
    r = pack(co_resume(co, unpack(answer, 2, answer.n)))
    ::again::
  end
  return unpack(r, 1, r.n)
end

local function wrap_failed(co, err)
  if co_status(co) == "dead" and not killed then co_close(co) end
  if type(err) == "string" then error(err, 3) end
  error(err, 0)
end

local function wrapped(co, ok, ...)
  if ok then return ... end
  wrap_failed(co, (...))
end

-- With a time slice and no CPU limit, the roots run unhooked (the watchdog
-- of _budget.py sees them); the script's own coroutines carry the count hook.
local hook_thread = B.hook_thread
local function create(f)
  local co = co_create(f)
  if hook_thread then hook_thread(sformat("%p", co)) end
  return co
end

local function wrap(f)
  local co = create(f)
  return function(...)
    return wrapped(co, resume(co, ...))
  end
end

function coroutine_lib.resume(co, ...)
  if type(co) ~= "thread" then argerror(2, 1, "thread expected, got " .. typename(co, select("#", ...) >= 0)) end
  return resume(co, ...)
end

if hook_thread then
  function coroutine_lib.create(...)
    local f = ...
    if type(f) ~= "function" then argerror(2, 1, "function expected, got " .. typename(f, select("#", ...) > 0)) end
    return create(f)
  end
end

function coroutine_lib.wrap(f)
  if type(f) ~= "function" then argerror(2, 1, "function expected, got " .. typename(f, true)) end
  return wrap(f)
end

function coroutine_lib.yield(...)
  if roots[co_running()] then error("attempt to yield from outside a coroutine", 0) end
  return co_yield(...)
end

function coroutine_lib.status(co)
  if type(co) ~= "thread" then argerror(2, 1, "thread expected, got " .. typename(co, co ~= nil)) end
  if passing[co] then return "normal" end
  return co_status(co)
end

function coroutine_lib.running()
  local co, main = co_running()
  if roots[co] == "main" then return co, true end
  return co, main
end

-- The roots are driven by Python, and a coroutine passing a request is as
-- good as running ("normal"): closing either would pull it from under a wait.
function coroutine_lib.close(co)
  if type(co) ~= "thread" then argerror(2, 1, "thread expected, got " .. typename(co, co ~= nil)) end
  if (roots[co] and co_status(co) ~= "dead") or passing[co] then
    local what = co == co_running() and "running" or "normal"
    error("cannot close a " .. what .. " coroutine", 0)
  end
  if killed then error("CPU time limit exceeded", 0) end
  return co_close(co)
end

function coroutine_lib.isyieldable(...)
  local co = select("#", ...) > 0 and (...) or co_running()
  if roots[co] then return false end
  return co_isyieldable(co)
end

-------------------------------------------------------------------------------
-- TCP objects
-------------------------------------------------------------------------------

-- Each LuaSocket object is a userdata (a Python token pushed by lupa) whose
-- metatable is swapped for its class's, as LuaSocket swaps the metatable of
-- its userdata; `impl` maps it to the engine object.
local impl = setmetatable({}, { __mode = "k" })
local tmo = setmetatable({}, { __mode = "k" })  -- settimeout values, verbatim
local pymt  -- lupa's metatable for Python objects (restored before collection)
local classes = {}
local methods = {}

-- auxiliar_checkclass / checkgroup: `want` is a class ("tcp{client}") or a
-- group ("tcp{any}", "udp{any}"), which each class's metatable lists.
local function checkobj(level, self, want)
  local o = impl[self]
  if o ~= nil then
    local mt = dgetmetatable(self)
    if mt and (mt.__name == want or rawget(mt, want) == true) then return o end
  end
  argerror(level + 1, 1, want .. " expected")
end

local function wrapobj(o, class)
  local ud = B.token()
  pymt = pymt or dgetmetatable(ud)
  impl[ud] = o
  tmo[ud] = { -1.0, -1.0 }
  dsetmetatable(ud, classes[class])
  return ud
end

local function setclass(ud, class)
  dsetmetatable(ud, classes[class])
end

local function tostring_obj(ud)
  local mt = dgetmetatable(ud)
  if impl[ud] == nil or mt == nil then error("invalid object passed to 'auxiliar.c:__tostring'", 0) end
  return sformat("%s: %p", mt.__index.class, ud)
end

local finished = false  -- the script ended: never call Python from a finalizer

-- Lupa's metatable must never be left where the script can reach it (from
-- a hand-called `__gc`): with it, a script could catch the bridge's Python
-- functions as they are called (`__call`) and call them with any arguments.
local finalized_mt = { __name = "finalized socket", __metatable = false }

local function gc_obj(ud)
  if finished then return end
  local o = impl[ud]
  if o == nil then return end  -- not ours, or finalized already
  impl[ud] = nil
  B.close(o)
  -- Give the userdata back to lupa so it releases its Python token.
  if pymt then
    dsetmetatable(ud, pymt)
    local gc = rawget(pymt, "__gc")
    if gc then gc(ud) end
    dsetmetatable(ud, finalized_mt)
  end
end

-- In the sandbox, `getmetatable` gives a copy of a metatable of the bridge:
-- a script changing the real one (its `__gc`, which Lua runs with hooks
-- off, so beyond the time slice and the CPU limit) would reach past it.
local function guard(mt)
  if sandboxed then
    local copy = {}
    for k, v in pairs(mt) do copy[k] = v end
    mt.__metatable = copy
  end
  return mt
end

local function make_close(any)
  return function(self)
  local o = checkobj(2, self, any)
  B.close(o)
  return 1.0
  end
end

local function make_getfd(any)
  return function(self)
  local o = checkobj(2, self, any)
  return B.getfd(o) + 0.0
  end
end

-- A sandboxed script could take any of the host's descriptors with setfd.
local function nosetfd()
  if sandboxed then error("setfd is not permitted in the sandbox", 3) end
end

local function make_setfd(any)
  return function(self, ...)
  local o = checkobj(2, self, any)
  local fd = checknumber(2, 2, (...), select("#", ...) > 0)
  nosetfd()
  B.setfd(o, trunc(fd))
  end
end

local function make_dirty(any)
  return function(self)
  local o = checkobj(2, self, any)
  return B.dirty(o)
  end
end

function methods.getfamily(self)
  local o = checkobj(2, self, "tcp{any}")
  return B.getfamily(o)
end

function methods.getsockname(self)
  local o = checkobj(2, self, "tcp{any}")
  return B.getsockname(o)
end

function methods.getpeername(self)
  local o = checkobj(2, self, "tcp{any}")
  return B.getpeername(o)
end

local function settimeout(group)
  return function(self, ...)
  local o = checkobj(2, self, group)
  local n = select("#", ...)
  local value, mode = ...
  local v = optnumber(2, 2, value, n >= 1, -1)
  local m = optstring(2, 3, mode, n >= 2, "b")
  local c = ssub(m, 1, 1)
  local t = tmo[self]
  if c == "b" then
    t[1] = v + 0.0
  elseif c == "t" or c == "r" then
    t[2] = v + 0.0
    c = "t"
  else
    argerror(2, 3, "invalid timeout mode")
  end
  B.settimeout(o, v, c)
  return 1.0
  end
end

local function gettimeout(group)
  return function(self)
    checkobj(2, self, group)
    local t = tmo[self]
    return t[1], t[2]
  end
end

methods.settimeout = settimeout("tcp{any}")
methods.gettimeout = gettimeout("tcp{any}")

local function option_name(level, name, present, setting, optkind)
  local s = checkstring(level + 1, 2, name, present)
  local kind = (optkind or B.optkind)(s, setting)
  if not kind then argerror(level + 1, 2, sformat("unsupported option `%.35s'", s)) end
  return s, kind
end

local function make_setoption(any, optkind)
  return function(self, ...)
  local o = checkobj(2, self, any)
  local n = select("#", ...)
  local name, value = ...
  local s, kind = option_name(2, name, n >= 1, true, optkind)
  if kind == "bool" then
    if type(value) ~= "boolean" then
      argerror(2, 3, "boolean expected, got " .. typename(value, n >= 2))
    end
    return B.setoption(o, s, value)
  elseif kind == "int" then
    return B.setoption(o, s, trunc(tonumber(value) or 0))
  end
  -- linger
  if type(value) ~= "table" then argerror(2, 3, "table expected, got " .. typename(value, n >= 2)) end
  local on = value.on
  if type(on) ~= "boolean" then argerror(2, 3, "boolean 'on' field expected") end
  local timeout = value.timeout
  if tonumber(timeout) == nil or (type(timeout) ~= "number" and type(timeout) ~= "string") then
    argerror(2, 3, "number 'timeout' field expected")
  end
  return B.setlinger(o, on, trunc(tonumber(timeout)))
  end
end

methods.setoption = make_setoption("tcp{any}")

function methods.getoption(self, ...)
  local o = checkobj(2, self, "tcp{any}")
  local s, kind = option_name(2, (...), select("#", ...) >= 1, false)
  local r = pack(B.getoption(o, s))
  if r[1] == nil then
    if r[2] == nil then return nil end  -- "error": nothing pending, one value
    return nil, r[2]
  end
  if kind == "int" then return r[1] + 0.0 end
  if kind == "linger" then return { on = r[1], timeout = r[2] } end
  return r[1]
end

function methods.bind(self, ...)
  local o = checkobj(2, self, "tcp{master}")
  local n = select("#", ...)
  local address, port = ...
  address = checkstring(2, 2, address, n >= 1)
  port = checkstring(2, 3, port, n >= 2)
  local err = request(B.bind, o, address, port)
  if err then return nil, err end
  return 1.0
end

local function make_listen(master, server)
  return function(self, ...)
  local o = checkobj(2, self, master)
  local n = select("#", ...)
  local backlog = trunc(optnumber(2, 2, (...), n >= 1, 32))
  local err = B.listen(o, backlog)
  if err then return nil, err end
  setclass(self, server)
  return 1.0
  end
end

function methods.connect(self, ...)
  local o = checkobj(2, self, "tcp{any}")
  local n = select("#", ...)
  local address, port = ...
  address = checkstring(2, 2, address, n >= 1)
  port = checkstring(2, 3, port, n >= 2)
  local err = request(B.connect, o, address, port)
  -- LuaSocket makes the object a client even when connecting fails.
  setclass(self, "tcp{client}")
  if err then return nil, err end
  return 1.0
end

local function make_accept(server, client_class)
  return function(self)
  local o = checkobj(2, self, server)
  local client, err = request(B.accept, o)
  if client == nil then return nil, err end
  return wrapobj(client, client_class)
  end
end

local receive_now, send_now = B.receive_now, B.send_now

-- Steps begun (see `step`): within one, the loop does not run, so a buffer
-- that a receive left empty stays empty (unless a timeout-0 call reads the
-- kernel, which B.receive tells). `drained[o]` is the step in which that
-- was last so: the next receive then goes to the driver without asking
-- `receive_now` first (one crossing into Python less per ping-pong line).
local steps = 0
local drained = setmetatable({}, { __mode = "k" })

-- receive and send for a class (`group`): LuaSocket's, and LuaSec's (whose
-- timeouts say "wantread"/"wantwrite", and which says "closed" while
-- `usable(self)` is false: before the handshake; and whose "*a" always
-- ends in "closed", `all_closes`).
local function make_receive(group, timeout_err, usable, all_closes)
  return function(self, ...)
  local o = checkobj(2, self, group)
  local n = select("#", ...)
  local pattern, prefix = ...
  local kind, count = 0, 0
  if pattern == "*l" or pattern == nil then
    -- (the common case, first: kind 0)
  elseif tonumber(pattern) ~= nil and (type(pattern) == "number" or type(pattern) == "string") then
    local x = tonumber(pattern)
    -- (`not (x >= 0)`: NaN fails LuaSocket's check too)
    if not (x >= 0) then argerror(2, 2, "invalid receive pattern") end
    count = trunc(x)
    kind = 2
  else
    local p = optstring(2, 2, pattern, n >= 1, "*l")
    local head = ssub(p, 1, 2)
    if head == "*l" then kind = 0
    elseif head == "*a" then kind = 1
    else argerror(2, 2, "invalid receive pattern") end
  end
  if prefix == nil then prefix = "" else prefix = optstring(2, 3, prefix, n >= 2, "") end
  if usable and not usable(self) then return nil, "closed", prefix end
  if prefix == "" and (kind == 0 or (kind == 2 and count ~= 0)) and drained[o] ~= steps then
    -- Already buffered, or (timeout 0) an answer at once: one call into
    -- Python, no yield to the driver.
    local data, err, partial = receive_now(o, kind, count)
    if data ~= nil then return data, nil, nil end
    if err then
      if err == "timeout" then err = timeout_err end
      return nil, err, partial
    end
  end
  local data, err, partial, more = request(B.receive, o, kind, count, prefix)
  if err then
    if err == "timeout" then err = timeout_err end
    return nil, err, partial
  end
  if more == false then drained[o] = steps end
  -- LuaSec: a TLS stream that ends (close_notify) fails "*a" too.
  if kind == 1 and all_closes then return nil, "closed", data end
  return data, nil, nil
  end
end

methods.receive = make_receive("tcp{client}", "timeout")

local function make_send(group, timeout_err, usable)
  return function(self, ...)
  local o = checkobj(2, self, group)
  local n = select("#", ...)
  local data, i, j = ...
  local len
  if n == 1 and type(data) == "string" then
    -- (the common case, first: the whole string)
    len = #data
    i, j = 1, len
  else
    data = checkstring(2, 2, data, n >= 1)
    len = #data
    i = trunc(optnumber(2, 3, i, n >= 2, 1))
    j = trunc(optnumber(2, 4, j, n >= 3, -1))
    if i < 0 then i = len + i + 1 end
    if j < 0 then j = len + j + 1 end
    if i < 1 then i = 1 end
    if j > len then j = len end
  end
  local sent, err = 0, nil
  if i <= j then
    if usable and not usable(self) then return nil, "closed", i - 1 + 0.0 end
    local chunk = i == 1 and j == len and data or ssub(data, i, j)
    sent, err = send_now(o, chunk)
    if sent == nil then
      sent, err = request(B.send, o, chunk)
    end
  end
  local last = sent + i - 1 + 0.0
  if err then
    if err == "timeout" then err = timeout_err end
    return nil, err, last
  end
  return last, nil, nil
  end
end

methods.send = make_send("tcp{client}", "timeout")

local shutdown_modes = { receive = true, send = true, both = true }

local function make_shutdown(client)
  return function(self, ...)
  local o = checkobj(2, self, client)
  local mode = optstring(2, 2, (...), select("#", ...) >= 1, "both")
  if not shutdown_modes[mode] then argerror(2, 2, sformat("invalid option '%s'", mode)) end
  B.shutdown(o, mode)
  return 1.0
  end
end

local function make_getstats(client)
  return function(self)
  local o = checkobj(2, self, client)
  local received, sent, age = B.getstats(o)
  return received + 0.0, sent + 0.0, age
  end
end

local function make_setstats(client)
  return function(self, ...)
  local o = checkobj(2, self, client)
  local n = select("#", ...)
  local r, s, a = ...
  r = optnumber(2, 2, r, n >= 1, nil)
  s = optnumber(2, 3, s, n >= 2, nil)
  if type(a) ~= "number" then a = nil end
  B.setstats(o, r and trunc(r), s and trunc(s), a)
  return 1.0
  end
end

methods.close = make_close("tcp{any}")
methods.getfd = make_getfd("tcp{any}")
methods.setfd = make_setfd("tcp{any}")
methods.dirty = make_dirty("tcp{any}")
methods.listen = make_listen("tcp{master}", "tcp{server}")
methods.accept = make_accept("tcp{server}", "tcp{client}")
methods.shutdown = make_shutdown("tcp{client}")
methods.getstats = make_getstats("tcp{client}")
methods.setstats = make_setstats("tcp{client}")
methods.setpeername = methods.connect
methods.setsockname = methods.bind

for _, class in ipairs({ "tcp{master}", "tcp{client}", "tcp{server}" }) do
  local index = { class = class }
  for k, f in pairs(methods) do index[k] = f end
  classes[class] = guard({
    __index = index,
    __name = class,
    __tostring = tostring_obj,
    __gc = gc_obj,
    ["tcp{any}"] = true,
  })
end

-------------------------------------------------------------------------------
-- UDP objects (udp.c): one method table for both classes, each method
-- checking the class or group it needs, as LuaSocket's do.
-------------------------------------------------------------------------------

local udp_methods = {}

function udp_methods.close(self)
  B.close(checkobj(2, self, "udp{any}"))
  return 1.0
end

function udp_methods.dirty(self)
  checkobj(2, self, "udp{any}")
  return false  -- 3.1: a UDP object's datagrams are in the kernel, never buffered
end

function udp_methods.getfamily(self)
  return B.getfamily(checkobj(2, self, "udp{any}"))
end

function udp_methods.getfd(self)
  return B.getfd(checkobj(2, self, "udp{any}")) + 0.0
end

function udp_methods.setfd(self, ...)
  local o = checkobj(2, self, "udp{any}")
  local fd = checknumber(2, 2, (...), select("#", ...) > 0)
  nosetfd()
  B.setfd(o, trunc(fd))
end

function udp_methods.getsockname(self)
  return B.getsockname(checkobj(2, self, "udp{any}"))
end

function udp_methods.getpeername(self)
  return B.getpeername(checkobj(2, self, "udp{connected}"))
end

udp_methods.settimeout = settimeout("udp{any}")
udp_methods.gettimeout = gettimeout("udp{any}")

-- receive(size) and receivefrom(size): luaL_optnumber, cast to size_t (a
-- negative size is a huge one, which malloc refuses).
local function datagram_size(n, size)
  local s = optnumber(3, 2, size, n >= 1, 8192)
  -- LuaSocket casts the size to size_t: a negative one or NaN asks malloc
  -- for more than it has
  -- (and no machine has 2^48 bytes to give)
  if not (s >= 0) or (s >= 2 ^ 48 and s ~= huge) then return nil end
  if s == huge then return 0 end -- what the x86 conversion gives
  return trunc(s)
end

function udp_methods.receive(self, ...)
  local o = checkobj(2, self, "udp{any}")
  local size = datagram_size(select("#", ...), (...))
  if size == nil then return nil, "out of memory" end
  return request(B.udp_receive, o, size, false)
end

function udp_methods.receivefrom(self, ...)
  local o = checkobj(2, self, "udp{unconnected}")
  local size = datagram_size(select("#", ...), (...))
  if size == nil then return nil, "out of memory" end
  return request(B.udp_receive, o, size, true)
end

function udp_methods.send(self, ...)
  local o = checkobj(2, self, "udp{connected}")
  local data = checkstring(2, 2, (...), select("#", ...) >= 1)
  return request(B.udp_send, o, data)
end

function udp_methods.sendto(self, ...)
  local o = checkobj(2, self, "udp{unconnected}")
  local n = select("#", ...)
  local data, ip, port = ...
  data = checkstring(2, 2, data, n >= 1)
  ip = checkstring(2, 3, ip, n >= 2)
  port = checkstring(2, 4, port, n >= 3)
  return request(B.udp_sendto, o, data, ip, port)
end

function udp_methods.setsockname(self, ...)
  local o = checkobj(2, self, "udp{unconnected}")
  local n = select("#", ...)
  local address, port = ...
  address = checkstring(2, 2, address, n >= 1)
  port = checkstring(2, 3, port, n >= 2)
  local err = request(B.udp_setsockname, o, address, port)
  if err then return nil, err end
  return 1.0
end

function udp_methods.setpeername(self, ...)
  local o = checkobj(2, self, "udp{any}")
  local n = select("#", ...)
  local address, port = ...
  address = checkstring(2, 2, address, n >= 1)
  local connecting = address ~= "*"
  port = connecting and checkstring(2, 3, port, n >= 2) or "0"
  local err = request(B.udp_setpeername, o, address, port)
  if err then return nil, err end
  setclass(self, connecting and "udp{connected}" or "udp{unconnected}")
  return 1.0
end

function udp_methods.setoption(self, ...)
  local o = checkobj(2, self, "udp{any}")
  local n = select("#", ...)
  local name, value = ...
  local s, kind = option_name(2, name, n >= 1, true, B.udp_optkind)
  local r
  if kind == "bool" then
    if type(value) ~= "boolean" then
      argerror(2, 3, "boolean expected, got " .. typename(value, n >= 2))
    end
    r = pack(B.udp_setoption(o, s, value))
  elseif kind == "int" then
    r = pack(B.udp_setoption(o, s, trunc(tonumber(value) or 0)))
  elseif kind == "ip" then
    r = pack(B.udp_setoption(o, s, checkstring(2, 3, value, n >= 2)))
  else
    if type(value) ~= "table" then argerror(2, 3, "table expected, got " .. typename(value, n >= 2)) end
    local multiaddr = value.multiaddr
    if type(multiaddr) ~= "string" and type(multiaddr) ~= "number" then
      argerror(2, 3, "string 'multiaddr' field expected")
    end
    local interface = value.interface
    if kind == "membership" then
      if type(interface) ~= "string" and type(interface) ~= "number" then
        argerror(2, 3, "string 'interface' field expected")
      end
      interface = tostring(interface)
    elseif interface ~= nil then
      if tonumber(interface) == nil or (type(interface) ~= "number" and type(interface) ~= "string") then
        argerror(2, -1, "number 'interface' field expected")
      end
      interface = trunc(tonumber(interface))
    end
    r = pack(B.udp_setoption(o, s, tostring(multiaddr), interface))
  end
  if r[1] == false then argerror(2, 3, r[2]) end
  return unpack(r, 1, r.n)
end

function udp_methods.getoption(self, ...)
  local o = checkobj(2, self, "udp{any}")
  local s, kind = option_name(2, (...), select("#", ...) >= 1, false, B.udp_optkind)
  local r = pack(B.udp_getoption(o, s))
  if r[1] == nil then
    if r[2] == nil then return nil end  -- "error": nothing pending, one value
    return nil, r[2]
  end
  if kind == "int" then return r[1] + 0.0 end
  return r[1]
end

for _, class in ipairs({ "udp{unconnected}", "udp{connected}" }) do
  local index = { class = class }
  for k, f in pairs(udp_methods) do index[k] = f end
  classes[class] = guard({
    __index = index,
    __name = class,
    __tostring = tostring_obj,
    __gc = gc_obj,
    ["udp{any}"] = true,
    ["select{able}"] = true,
  })
end

-------------------------------------------------------------------------------
-- Unix domain sockets (unixstream.c, unixdgram.c): `require "socket.unix"`.
-- The stream classes share the TCP methods' code, with their own classes;
-- addresses are paths (C strings: a NUL ends them, but for the length).
-------------------------------------------------------------------------------

local stream_methods = {
  accept = make_accept("unixstream{server}", "unixstream{client}"),
  close = make_close("unixstream{any}"),
  dirty = make_dirty("unixstream{any}"),
  getfd = make_getfd("unixstream{any}"),
  getstats = make_getstats("unixstream{client}"),
  listen = make_listen("unixstream{master}", "unixstream{server}"),
  receive = make_receive("unixstream{client}", "timeout"),
  send = make_send("unixstream{client}", "timeout"),
  setfd = make_setfd("unixstream{any}"),
  setoption = make_setoption("unixstream{any}", B.unix_stream_optkind),
  setstats = make_setstats("unixstream{client}"),
  settimeout = settimeout("unixstream{any}"),
  shutdown = make_shutdown("unixstream{client}"),
}

function stream_methods.bind(self, ...)
  local o = checkobj(2, self, "unixstream{master}")
  local err = request(B.unix_bind, o, checkstring(2, 2, (...), select("#", ...) >= 1))
  if err then return nil, err end
  return 1.0
end

function stream_methods.connect(self, ...)
  local o = checkobj(2, self, "unixstream{master}")
  local err = request(B.unix_connect, o, checkstring(2, 2, (...), select("#", ...) >= 1))
  if err then return nil, err end
  setclass(self, "unixstream{client}")
  return 1.0
end

function stream_methods.getsockname(self)
  return B.unix_getsockname(checkobj(2, self, "unixstream{any}"))
end

stream_methods.setpeername = stream_methods.connect
stream_methods.setsockname = stream_methods.bind

local dgram_methods = {
  close = make_close("unixdgram{any}"),
  getfd = make_getfd("unixdgram{any}"),
  setfd = make_setfd("unixdgram{any}"),
  setoption = make_setoption("unixdgram{any}", B.unix_dgram_optkind),
  settimeout = settimeout("unixdgram{any}"),
  gettimeout = gettimeout("unixdgram{any}"),
}

function dgram_methods.getsockname(self)
  return B.unix_getsockname(checkobj(2, self, "unixdgram{any}"))
end

function dgram_methods.dirty(self)
  checkobj(2, self, "unixdgram{any}")
  return false
end

function dgram_methods.bind(self, ...)
  local o = checkobj(2, self, "unixdgram{unconnected}")
  local err = request(B.unix_bind, o, checkstring(2, 2, (...), select("#", ...) >= 1))
  if err then return nil, err end
  return 1.0
end

function dgram_methods.connect(self, ...)
  local o = checkobj(2, self, "unixdgram{any}")
  local err = request(B.unix_connect, o, checkstring(2, 2, (...), select("#", ...) >= 1))
  if err then return nil, err end
  setclass(self, "unixdgram{connected}")
  return 1.0
end

function dgram_methods.send(self, ...)
  local o = checkobj(2, self, "unixdgram{connected}")
  local data = checkstring(2, 2, (...), select("#", ...) >= 1)
  return request(B.udp_send, o, data)
end

function dgram_methods.sendto(self, ...)
  local o = checkobj(2, self, "unixdgram{unconnected}")
  local n = select("#", ...)
  local data, path = ...
  data = checkstring(2, 2, data, n >= 1)
  path = checkstring(2, 3, path, n >= 2)
  return request(B.unix_sendto, o, data, path)
end

function dgram_methods.receive(self, ...)
  local o = checkobj(2, self, "unixdgram{any}")
  local size = datagram_size(select("#", ...), (...))
  if size == nil then return nil, "out of memory" end
  return request(B.unix_receive, o, size, false)
end

function dgram_methods.receivefrom(self, ...)
  local o = checkobj(2, self, "unixdgram{unconnected}")
  local size = datagram_size(select("#", ...), (...))
  if size == nil then return nil, "out of memory" end
  return request(B.unix_receive, o, size, true)
end

dgram_methods.setpeername = dgram_methods.connect
dgram_methods.setsockname = dgram_methods.bind

for group, list in pairs({
  ["unixstream{any}"] = { stream_methods, "unixstream{master}", "unixstream{client}", "unixstream{server}" },
  ["unixdgram{any}"] = { dgram_methods, "unixdgram{unconnected}", "unixdgram{connected}" },
}) do
  for i = 2, #list do
    local class = list[i]
    local index = { class = class }
    for k, f in pairs(list[1]) do index[k] = f end
    classes[class] = guard({
      __index = index,
      __name = class,
      __tostring = tostring_obj,
      __gc = gc_obj,
      [group] = true,
      ["select{able}"] = group == "unixdgram{any}" or nil,
    })
  end
end

local unix = {}

function unix.stream()
  local o, err = B.unix_stream()
  if o == nil then return nil, err end
  return wrapobj(o, "unixstream{master}")
end

function unix.dgram()
  local o, err = B.unix_dgram()
  if o == nil then return nil, err end
  return wrapobj(o, "unixdgram{unconnected}")
end

unix.tcp, unix.udp = unix.stream, unix.dgram
-- The old `socket.unix()` form makes a stream object.
unix.__call = function(_, ...) return unix.stream(...) end
setmetatable(unix, unix)

-------------------------------------------------------------------------------
-- The socket namespace (socket.core + socket.lua)
-------------------------------------------------------------------------------

local socket = {
  _VERSION = "LuaSocket 3.0.0",
  _SETSIZE = 1024,
  _SOCKETINVALID = -1,
  _DATAGRAMSIZE = 8192,
  BLOCKSIZE = 2048,
}

local function create(family)
  local o, err = B.tcp(family)
  if o == nil then return nil, err end
  return wrapobj(o, "tcp{master}")
end

function socket.tcp() return create(0) end
function socket.tcp4() return create(4) end
function socket.tcp6() return create(6) end

local function create_udp(family)
  local o, err = B.udp(family)
  if o == nil then return nil, err end
  return wrapobj(o, "udp{unconnected}")
end

function socket.udp() return create_udp(0) end
function socket.udp4() return create_udp(4) end
function socket.udp6() return create_udp(6) end

function socket.gettime() return B.gettime() end

function socket.sleep(...)
  local t = checknumber(2, 1, (...), select("#", ...) >= 1)
  if t > 0 then request(B.sleep, t + 0.0) end
end

function socket.skip(...)
  local d = (...)
  local n = checknumber(2, 1, d, select("#", ...) >= 1)
  local i = tointeger(n)
  if i == nil then argerror(2, 1, "number has no integer representation") end
  return select(i + 2, ...)
end

function socket.__unload() return 0 end

local function global_connect(level, address, port, locaddr, locport, family, n)
  address = checkstring(level + 1, 1, address, n >= 1)
  port = checkstring(level + 1, 2, port, n >= 2)
  locaddr = optstring(level + 1, 3, locaddr, n >= 3, nil)
  locport = optstring(level + 1, 4, locport, n >= 4, "0")
  local fam = optstring(level + 1, 5, family, n >= 5, "unspec")
  local code = ({ unspec = 0, inet = 4, inet6 = 6 })[fam]
  if code == nil then argerror(level + 1, 5, sformat("invalid option '%s'", fam)) end
  local o, err = request(B.global_connect, address, port, locaddr, locport, code)
  if o == nil then return nil, err end
  return wrapobj(o, "tcp{client}")
end

function socket.connect(...)
  local c, err = global_connect(2, (select(1, ...)), (select(2, ...)), (select(3, ...)), (select(4, ...)),
    (select(5, ...)), select("#", ...))
  if c == nil then return nil, err end
  return c
end

function socket.connect4(address, port, laddr, lport)
  local c, err = global_connect(2, address, port, laddr, lport, "inet", 5)
  if c == nil then return nil, err end
  return c
end

function socket.connect6(address, port, laddr, lport)
  local c, err = global_connect(2, address, port, laddr, lport, "inet6", 5)
  if c == nil then return nil, err end
  return c
end

-- select's results as LuaSocket gives them, from B.select's answer `r`
-- (the count of readable entries, then positions in `recv` and `send`):
-- the sockets in order, each also a key to its index.
local function ready_tables(r, recv, send)
  local nready = r[1]
  local rt, wt = {}, {}
  for x = 2, r.n do
    local e
    if x - 1 <= nready then
      e = recv[r[x]]
      rt[#rt + 1] = e
      rt[e] = #rt + 0.0
    else
      e = send[r[x]]
      wt[#wt + 1] = e
      wt[e] = #wt + 0.0
    end
  end
  return rt, wt
end

-- A table given to `select` again and again (a dispatcher's: Copas's) is
-- mirrored in Python by a kept list (B.kept_list) and sent only what changed
-- since its last call: one value per changed entry rather than per entry,
-- and the engine looks only at the connections whose readiness changed.
-- Tables of 32 entries or more get one (smaller ones cost little either way).
local KEPT_MIN = 32
local kept = setmetatable({}, { __mode = "k" })  -- table -> { list = kept list, n = size, [i] = entry }

-- Appends to `out` (from `at`) the changes of `tab` since its last call:
-- pairs of position and engine object. Returns the kept list, the table's
-- size and the new end of `out`; nil when an entry is not one of the
-- script's sockets (a foreign object: the long way).
local function kept_changes(tab, out, at)
  local snap = kept[tab]
  if snap == nil then
    snap = { list = B.kept_list(), n = 0 }
    kept[tab] = snap
  end
  local i = 1
  while true do
    local e = tab[i]
    if e == nil then break end
    if snap[i] ~= e then
      local o = impl[e]
      if o == nil then
        -- Out of step with Python from here: the next call sends it all.
        for j = 1, snap.n do snap[j] = nil end
        snap.n = 0
        return nil
      end
      snap[i] = e
      out[at + 1] = i
      out[at + 2] = o
      at = at + 2
    end
    i = i + 1
  end
  local n = i - 1
  for j = n + 1, snap.n do snap[j] = nil end
  snap.n = n
  return snap.list, n, at
end

-- select over kept lists; nil when a table holds a foreign object.
local function select_kept(recvt, sendt, t)
  local out, at, nr, ns = {}, 0, 0, 0
  local lr, ls
  if recvt ~= nil then
    lr, nr, at = kept_changes(recvt, out, at)
    if lr == nil then return nil end
  end
  local nchanged = at // 2
  if sendt ~= nil then
    if sendt == recvt then
      ls, ns = lr, nr
    else
      ls, ns, at = kept_changes(sendt, out, at)
      if ls == nil then return nil end
    end
  end
  local r = pack(request(B.select_kept, t + 0.0, lr, ls, nr, ns, nchanged, unpack(out, 1, at)))
  if r[1] == nil then return {}, {}, r[2] end
  return ready_tables(r, recvt, sendt)
end

function socket.select(...)
  local n = select("#", ...)
  local recvt, sendt, timeout = ...
  if recvt ~= nil and type(recvt) ~= "table" then
    argerror(2, 1, "table expected, got " .. typename(recvt, n >= 1))
  end
  if sendt ~= nil and type(sendt) ~= "table" then
    argerror(2, 2, "table expected, got " .. typename(sendt, n >= 2))
  end
  local t = optnumber(2, 3, timeout, n >= 3, -1)
  if t ~= t then t = 0 end -- NaN: LuaSocket's select waits no time
  if (recvt ~= nil and (kept[recvt] or recvt[KEPT_MIN] ~= nil))
    or (sendt ~= nil and (kept[sendt] or sendt[KEPT_MIN] ~= nil)) then
    local rt, wt, err = select_kept(recvt, sendt, t)
    if rt ~= nil then return rt, wt, err end
  end
  -- The engine's objects go to Python as one argument list, receivers
  -- first (a table indexed from Python costs a crossing per element).
  local lists, pys, np = {}, {}, 0
  for k, tab in ipairs({ recvt or {}, sendt or {} }) do
    local elems = {}
    local i = 1
    while true do
      local e = tab[i]
      if e == nil then break end
      local o = impl[e]
      if o == nil then
        local ok, getfd = pcall(function() return e.getfd end)
        if not ok then error("attempt to index a " .. type(e) .. " value", 0) end
        if getfd ~= nil then
          local fd = tonumber(getfd(e))
          if fd ~= nil and fd >= 0 then
            local dirty = false
            if k == 1 and e.dirty ~= nil then dirty = e:dirty() and true or false end
            o = B.foreign(trunc(fd), dirty)
            if o == nil then
              error(sformat("select: descriptor %d is not one of the script's sockets (sandbox)", trunc(fd)), 2)
            end
          end
        end
      end
      if o ~= nil then
        elems[#elems + 1] = e
        np = np + 1
        pys[np] = o
      end
      i = i + 1
    end
    lists[k] = elems
  end
  local r = pack(request(B.select, #lists[1], t + 0.0, unpack(pys, 1, np)))
  if r[1] == nil then return {}, {}, r[2] end
  return ready_tables(r, lists[1], lists[2])
end

-- except.c: try / newtry / protect
local try_mt = { __metatable = false }

local function finalize_error(finalizer, ...)
  if finalizer ~= nil then finalizer() end
  error(setmetatable({ (select(2, ...)) }, try_mt), 0)
end

function socket.newtry(finalizer)
  return function(...)
    if not (...) then finalize_error(finalizer, ...) end
    return ...
  end
end

socket.try = socket.newtry()

local function protect_results(ok, ...)
  if ok then return ... end
  local err = (...)
  if type(err) == "table" and dgetmetatable(err) == try_mt then
    return nil, err[1]
  end
  error(err, 0)
end

function socket.protect(f)
  return function(...)
    return protect_results(pcall(f, ...))
  end
end

-- socket.lua helpers
function socket.choose(table)
  return function(name, opt1, opt2)
    if type(name) ~= "string" then
      name, opt1, opt2 = "default", name, opt1
    end
    local f = table[name or "nil"]
    if not f then error("unknown key (" .. tostring(name) .. ")", 3)
    else return f(opt1, opt2) end
  end
end

socket.sourcet = {}
socket.sinkt = {}

socket.sinkt["close-when-done"] = function(sock)
  return setmetatable({
    getfd = function() return sock:getfd() end,
    dirty = function() return sock:dirty() end
  }, {
    __call = function(self, chunk, err)
      if not chunk then
        sock:close()
        return 1
      else return sock:send(chunk) end
    end
  })
end

socket.sinkt["keep-open"] = function(sock)
  return setmetatable({
    getfd = function() return sock:getfd() end,
    dirty = function() return sock:dirty() end
  }, {
    __call = function(self, chunk, err)
      if chunk then return sock:send(chunk)
      else return 1 end
    end
  })
end

socket.sinkt["default"] = socket.sinkt["keep-open"]

socket.sink = socket.choose(socket.sinkt)

socket.sourcet["by-length"] = function(sock, length)
  return setmetatable({
    getfd = function() return sock:getfd() end,
    dirty = function() return sock:dirty() end
  }, {
    __call = function()
      if length <= 0 then return nil end
      local size = math.min(socket.BLOCKSIZE, length)
      local chunk, err = sock:receive(size)
      if err then return nil, err end
      length = length - string.len(chunk)
      return chunk
    end
  })
end

socket.sourcet["until-closed"] = function(sock)
  local done
  return setmetatable({
    getfd = function() return sock:getfd() end,
    dirty = function() return sock:dirty() end
  }, {
    __call = function()
      if done then return nil end
      local chunk, err, partial = sock:receive(socket.BLOCKSIZE)
      if not err then return chunk
      elseif err == "closed" then
        sock:close()
        done = 1
        return partial
      else return nil, err end
    end
  })
end

socket.sourcet["default"] = socket.sourcet["until-closed"]

socket.source = socket.choose(socket.sourcet)

-- dns (resolved on the loop's resolver, never blocking it)
local dns = {}
socket.dns = dns

local function resolved_table(name, aliases, ips)
  return { name = name, alias = aliases, ip = ips }
end

function dns.gethostname()
  return B.gethostname()
end

local function hostent(fn, ...)
  local address = checkstring(3, 1, (...), select("#", ...) >= 1)
  local r = pack(request(fn, address))
  if r[1] == nil then return nil, r[2] end
  local aliases, ips = {}, {}
  for x = 1, r[2] do aliases[x] = r[2 + x] end
  for x = 1, r[3 + r[2]] do ips[x] = r[3 + r[2] + x] end
  return r[1], resolved_table(r[1], aliases, ips)
end

function dns.toip(...)
  local name, resolved = hostent(B.toip, ...)
  if name == nil then return nil, resolved end
  return resolved.ip[1], resolved
end

function dns.tohostname(...)
  return hostent(B.tohostname, ...)
end

function dns.getaddrinfo(...)
  local host = checkstring(2, 1, (...), select("#", ...) >= 1)
  local r = pack(request(B.getaddrinfo, host))
  if r[1] == nil then return nil, r[2] end
  local list = {}
  for x = 1, r.n, 2 do list[#list + 1] = { family = r[x], addr = r[x + 1] } end
  return list
end

function dns.getnameinfo(...)
  local n = select("#", ...)
  local host, serv = ...
  host = optstring(2, 1, host, n >= 1, nil)
  serv = optstring(2, 2, serv, n >= 2, nil)
  if host == nil and serv == nil then error("host and serv cannot be both nil", 2) end
  local r = pack(request(B.getnameinfo, host, serv))
  if r[1] == nil then return nil, r[2] end
  local names = {}
  for x = 2, r.n do names[#names + 1] = r[x] end
  if r[1] == false then return names end
  return names, r[1]
end

-- socket.lua's bind shortcut, as written there: "*" is the IPv4 wildcard only.
function socket.bind(host, port, backlog)
  if host == "*" then host = "0.0.0.0" end
  local addrinfo, err = socket.dns.getaddrinfo(host)
  if not addrinfo then return nil, err end
  local sock, res
  err = "no info on address"
  for _, alt in ipairs(addrinfo) do
    if alt.family == "inet" then
      sock, err = socket.tcp4()
    else
      sock, err = socket.tcp6()
    end
    if not sock then return nil, err end
    sock:setoption("reuseaddr", true)
    res, err = sock:bind(alt.addr, port)
    if not res then
      sock:close()
    else
      res, err = sock:listen(backlog)
      if not res then
        sock:close()
      else
        return sock
      end
    end
  end
  return nil, err
end

-------------------------------------------------------------------------------
-- The aioluasock extension module
-------------------------------------------------------------------------------

local ext = { _VERSION = "aioluasock 0.1" }
local task_methods = {}  -- not the metatable: `t.__index` must not lead to it
local task_mt = { __name = "aioluasock.task", __index = task_methods }
function task_mt.__tostring(t) return sformat("aioluasock.task: %p", t) end
function task_mt.__gc(t) if not finished then B.forget(t.id) end end
guard(task_mt)

-- Root coroutines (driven by Python tasks) are known to Python by number:
-- lupa does not hand Lua threads to Python as threads.
local threads = {}
local last_thread = 0

-- A new root: its number, and its address (for the time slice's watchdog).
local function new_root(f, kind)
  local co = co_create(f)
  roots[co] = kind
  last_thread = last_thread + 1
  threads[last_thread] = co
  return last_thread, sformat("%p", co)
end

local function drop(id)
  threads[id] = nil
end

-- spawn(f, ...): run f(...) as a new task on the loop; returns a handle.
function ext.spawn(...)
  local f = (...)
  if type(f) ~= "function" then argerror(2, 1, "function expected, got " .. typename(f, select("#", ...) > 0)) end
  local id, address = new_root(f, "task")
  B.spawn(id, address, select(2, ...))
  return setmetatable({ id = id }, task_mt)
end

local function checktask(level, t, present)
  if dgetmetatable(t) ~= task_mt then
    argerror(level + 1, 1, "aioluasock.task expected, got " .. typename(t, present))
  end
  return t.id
end

-- wait(task): wait until the task ends; true, its results; or false, "cancelled".
function ext.wait(...)
  local id = checktask(2, (...), select("#", ...) > 0)
  return request(B.wait, id)
end
task_methods.wait = ext.wait

-- waitall(): wait until every other task has ended.
function ext.waitall()
  request(B.waitall)
end

-- cancel(task): cancel a task (it ends at its next wait); true if it was running.
function ext.cancel(...)
  local id = checktask(2, (...), select("#", ...) > 0)
  return B.cancel(id)
end
task_methods.cancel = ext.cancel

function ext.sleep(...)
  local t = checknumber(2, 1, (...), select("#", ...) >= 1)
  request(B.sleep, t > 0 and t + 0.0 or 0.0)
end

function ext.gettime() return B.gettime() end

-------------------------------------------------------------------------------
-- What the Python driver uses
-------------------------------------------------------------------------------

local function message_of(err)
  if type(err) == "string" or mtype(err) then return tostring(err) end
  local mt = dgetmetatable(err)
  if mt and mt.__tostring then
    local ok, s = pcall(tostring, err)
    if ok and type(s) == "string" then return s end
  end
  return sformat("(error object is a %s value)", type(err))
end

-- step(co, ...): resume a root coroutine. Returns
--   1, n, results...            it returned
--   2, fn, args...              it requested fn(args...) of the driver
--   3, message, traceback, err  it raised err
local function stepped(id, co, ok, ...)
  if ok then
    if co_status(co) == "dead" then
      threads[id] = nil
      return 1, select("#", ...), ...
    end
    if (...) == REQ then return 2, select(2, ...) end
    if select("#", ...) == 0 and paused(co) then return 2, B.pause end
    return 3, "attempt to yield from outside a coroutine", dtraceback(co, "attempt to yield from outside a coroutine"), nil
  end
  threads[id] = nil
  local err = ...
  local msg = message_of(err)
  return 3, msg, dtraceback(co, msg), err
end

local function step(id, ...)
  local co = threads[id]
  steps = steps + 1
  return stepped(id, co, co_resume(co, ...))
end

local function exit(...)
  local code = ...
  if code == nil or code == true then code = 0
  elseif code == false then code = 1
  else code = trunc(checknumber(2, 1, code, true)) end
  request(B.exit, code)
end

-- The CPU limit is passed (see _budget.py): the running thread fails at its
-- next instruction, and at every one after. An error raised from a hook
-- leaves hooks off until the next pcall boundary, so the script's code that
-- would run in between (an xpcall message handler, the __close of a coroutine
-- closed after it died) is skipped from here on.
local function over() error("CPU time limit exceeded", 0) end
local function kill()
  killed = true
  dsethook(co_running(), over, "", 1)
end

-- With a CPU limit the script's xpcall skips its handler once killed.
local real_xpcall = xpcall
local function limited_xpcall(f, handler, ...)
  if type(handler) ~= "function" then return real_xpcall(f, handler, ...) end
  return real_xpcall(f, function(e)
    if killed then return e end
    return handler(e)
  end, ...)
end

-- The script ended (its sockets are closed by Python): hand every userdata
-- back to lupa, so that closing the Lua state runs only lupa's finalizers.
local function finish()
  finished = true
  for ud in pairs(impl) do
    dsetmetatable(ud, pymt)
  end
  for id in pairs(threads) do threads[id] = nil end
end

-- What the LuaSec `ssl` module (ssl.lua) builds on.
local internal = {
  B = B, impl = impl, tmo = tmo, request = request, argerror = argerror, typename = typename,
  checkstring = checkstring, optstring = optstring, checknumber = checknumber, checkobj = checkobj,
  methods = methods, make_receive = make_receive, make_send = make_send, settimeout = settimeout,
  gettimeout = gettimeout, gc_obj = gc_obj, socket = socket,
  -- Forget a userdata that holds no socket (a context, a certificate).
  release = function(ud)
    if finished then return end
    impl[ud] = nil
    if pymt then
      dsetmetatable(ud, pymt)
      local gc = rawget(pymt, "__gc")
      if gc then gc(ud) end
    end
  end,
  getmetatable = dgetmetatable,
  new_userdata = function(o, mt)
    local ud = B.token()
    pymt = pymt or dgetmetatable(ud)
    impl[ud] = o
    tmo[ud] = { -1.0, -1.0 }
    dsetmetatable(ud, mt)
    return ud
  end,
}

return {
  internal = internal,
  finish = finish,
  REQ = REQ,
  RAISE = RAISE,
  step = step,
  new_root = new_root,
  drop = drop,
  socket = socket,
  unix = unix,
  ext = ext,
  coroutine = coroutine_lib,
  exit = exit,
  kill = kill,
  xpcall = limited_xpcall,
}
