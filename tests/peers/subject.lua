-- The LuaSocket 3.1 side of the differential tests in tests/test_against_luasocket.py.
--
-- Usage: lua5.4 subject.lua HOST OP...
-- Runs the operations in order with real LuaSocket and prints, for each one, a
-- JSON line {"i":k,"op":NAME,"v":[every returned value, nils included]} (or
-- {"i":k,"op":NAME,"raised":MESSAGE} when the call raised). Sockets are printed
-- as the names the script gave them. The Python side runs the very same
-- operations with aioluasock (test_against_luasocket.py: `run_python_subject`).
-- Operations (one argument each, words separated by spaces):
--   connect NAME PORT            socket.connect(HOST, PORT)
--   bind NAME PORT|@OBJ          socket.bind(HOST, PORT or OBJ's port); prints {"port":N} too
--   accept NAME SERVER           SERVER:accept()
--   receive OBJ PATTERN [HEX]    "*l", "*a" or a count; HEX is the prefix
--   send OBJ HEX
--   settimeout OBJ VALUE [MODE]
--   setoption OBJ OPTION VALUE   VALUE: true, false, an integer or linger:ON:TIMEOUT
--   getoption OBJ OPTION
--   select R W T                 R, W: names separated by commas, or "-"
--   getsockname OBJ | getpeername OBJ | getstats OBJ | dirty OBJ | getfamily OBJ
--   shutdown OBJ MODE | close OBJ | sleep T
local dir = arg[0]:match("^(.*/)") or "./"
package.path = dir .. "?.lua;" .. package.path
local socket = require("socket")
local C = require("common")

local host = arg[1]
local objs, names = {}, {}

local function list(spec)
  local t = {}
  if spec ~= "-" then
    for name in spec:gmatch("[^,]+") do t[#t + 1] = assert(objs[name], name) end
  end
  return t
end

local function value(v)
  if v == "true" then return true end
  if v == "false" then return false end
  local on, timeout = v:match("^linger:(%a+):(%d+)$")
  if on then return { on = on == "true", timeout = tonumber(timeout) } end
  return assert(math.tointeger(tonumber(v)), v)
end

local function keep(name, obj, ...)
  if obj then
    objs[name] = obj
    names[obj] = name
  end
  return obj, ...
end

local ops = {
  connect = function(w) return keep(w[2], socket.connect(host, w[3])) end,
  bind = function(w)
    local port = w[3]
    if port:sub(1, 1) == "@" then
      local _, p = objs[port:sub(2)]:getsockname()
      port = p
    end
    local server, err = socket.bind(host, port)
    if server then
      keep(w[2], server)
      local _, p = server:getsockname()
      C.emit('{"port":' .. tonumber(p) .. "}")
    end
    return server, err
  end,
  accept = function(w) return keep(w[2], objs[w[3]]:accept()) end,
  receive = function(w) return objs[w[2]]:receive(C.pattern(w[3]), w[4] and C.unhex(w[4])) end,
  send = function(w) return objs[w[2]]:send(C.unhex(w[3] or "")) end,
  settimeout = function(w) return objs[w[2]]:settimeout(tonumber(w[3]), w[4]) end,
  setoption = function(w) return objs[w[2]]:setoption(w[3], value(w[4])) end,
  getoption = function(w) return objs[w[2]]:getoption(w[3]) end,
  select = function(w) return socket.select(list(w[2]), list(w[3]), tonumber(w[4])) end,
  getsockname = function(w) return objs[w[2]]:getsockname() end,
  getpeername = function(w) return objs[w[2]]:getpeername() end,
  getstats = function(w) return objs[w[2]]:getstats() end,
  dirty = function(w) return objs[w[2]]:dirty() end,
  getfamily = function(w) return objs[w[2]]:getfamily() end,
  shutdown = function(w) return objs[w[2]]:shutdown(w[3]) end,
  close = function(w) return objs[w[2]]:close() end,
  sleep = function(w) return socket.sleep(tonumber(w[2])) end,
}

for k = 2, #arg do
  local w = C.words(arg[k])
  local f = assert(ops[w[1]], "unknown operation " .. tostring(w[1]))
  local head = '{"i":' .. (k - 1) .. ',"op":' .. C.encode(w[1])
  local res = table.pack(pcall(f, w))
  if res[1] then
    C.emit(head .. ',"v":' .. C.pack(names, table.unpack(res, 2, res.n)) .. "}")
  else
    C.emit(head .. ',"raised":' .. C.encode(tostring(res[2])) .. "}")
  end
end
for _, obj in pairs(objs) do obj:close() end
