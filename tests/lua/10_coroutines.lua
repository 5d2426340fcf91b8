-- The script's own coroutines around socket calls (a Copas-style dispatcher
-- with settimeout(0) + select), and the coroutine library's answers.
local socket = require("socket")
local U = require("util")

print("== coroutine library at top level")
local co, main = coroutine.running()
U.show("running() is main", type(co), main)
U.show("isyieldable() at top level", coroutine.isyieldable())
U.try("yield at top level", function() return (coroutine.yield(1)) end)
local inner
local w = coroutine.wrap(function(...)
  inner = coroutine.running()
  U.show("inside: running() main?", select(2, coroutine.running()))
  U.show("inside: isyieldable()", coroutine.isyieldable())
  U.show("inside: status(self)", coroutine.status(inner))
  local x = coroutine.yield(...)
  return "got", x
end)
U.show("wrap first resume", w(1, 2))
U.show("status(suspended)", coroutine.status(inner))
U.show("wrap second resume", w("x"))
U.show("status(dead)", coroutine.status(inner))
U.try("wrap dead", function() return (w()) end)
local e = coroutine.wrap(function() error("inside") end)
U.try("wrap error position", function() return (e()) end)
local e2 = coroutine.wrap(function() error({ code = 7 }) end)
U.try("wrap table error", function() local ok, err = pcall(e2); return ok, err.code end)
local cr = coroutine.create(function(a) local b = coroutine.yield(a + 1); error("boom " .. b, 0) end)
U.show("resume #1", coroutine.resume(cr, 1))
U.show("resume #2 error", coroutine.resume(cr, "x"))
U.show("resume dead", coroutine.resume(cr))
U.try("resume(1)", function() return (coroutine.resume(1)) end)
U.try("wrap(1)", function() return (coroutine.wrap(1)) end)

print("== socket calls inside coroutines")
local srv, port = U.server()
local gen = coroutine.wrap(function()
  local c = socket.connect("127.0.0.1", port)
  coroutine.yield("connected", c.class)
  local a = srv:accept()
  coroutine.yield("accepted", a.class)
  c:send("line one\nline two\n")
  for i = 1, 2 do coroutine.yield("line", a:receive()) end
  c:close()
  a:close()
  return "done"
end)
for _ = 1, 5 do U.show("generator", gen()) end

print("== a select-driven dispatcher (Copas style)")
local threads, order = {}, {}
local function spawn(f, ...)
  local t = coroutine.create(f)
  threads[#threads + 1] = t
  assert(coroutine.resume(t, ...))
end
local waiting_r = {}
local function wait_read(sock)
  waiting_r[sock] = coroutine.running()
  coroutine.yield()
end
local function handler(client, n)
  client:settimeout(0)
  local buf = nil
  while true do
    local line, err, part = client:receive("*l", buf)
    if line then
      order[#order + 1] = n .. ":" .. line
      client:send(line:upper() .. "\n")
      if line == "quit" then break end
      buf = nil
    elseif err == "timeout" then
      buf = part
      wait_read(client)
    else
      order[#order + 1] = n .. ":" .. err
      break
    end
  end
  client:close()
end
srv:settimeout(0)
local clients = {}
for i = 1, 3 do clients[i] = socket.connect("127.0.0.1", port) end
for i = 1, 3 do
  local a = assert(socket.select({ srv }, nil, 2) and srv:accept())
  spawn(handler, a, i)
end
clients[2]:send("hello\nwor")
clients[1]:send("first\n")
clients[3]:send("quit\n")
clients[2]:send("ld\nquit\n")
clients[1]:send("quit\n")
local rounds = 0
while next(waiting_r) and rounds < 50 do
  rounds = rounds + 1
  local list = {}
  for s in pairs(waiting_r) do list[#list + 1] = s end
  local ready = socket.select(list, nil, 2)
  for _, s in ipairs(ready) do
    local t = waiting_r[s]
    waiting_r[s] = nil
    assert(coroutine.resume(t))
  end
end
table.sort(order)
U.show("handled", table.concat(order, " "))
for i = 1, 3 do
  clients[i]:settimeout(1)
  local r = {}
  while true do
    local l = clients[i]:receive()
    if not l then break end
    r[#r + 1] = l
  end
  U.show("client " .. i .. " got", table.concat(r, ","))
  clients[i]:close()
end
srv:close()

print("== argument errors of functions called with no name to go by (pcall(f, ...))")
U.try("pcall(coroutine.create, 1)", coroutine.create, 1)
U.try("pcall(coroutine.wrap, 1)", coroutine.wrap, 1)
-- (Not socket.select: real LuaSocket's table is both package.loaded.socket and
-- ["socket.core"], and which name lauxlib finds first varies from run to run.)
