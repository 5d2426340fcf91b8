-- A scripted LuaSocket 3.1 peer for tests/test_against_luasocket.py.
--
-- Usage:
--   lua5.4 peer.lua listen HOST ACTION...       bind HOST:0, print {"port":N}, accept one
--   lua5.4 peer.lua connect HOST PORT ACTION... connect to HOST:PORT
-- then print {"addr":{"sock":[ip,port],"peer":[ip,port]}} and run the actions in
-- order on the connection. Each ACTION is one argument, words separated by spaces:
--   send HEX           send the bytes (hex); prints {"send":[...]} (LuaSocket's values)
--   sendrep HEX N      send the bytes repeated N times, in one call
--   recv PATTERN       receive "*l", "*a" or a count; prints {"recv":[...]}
--   wait               receive "*a" until the other side closes; prints {"wait":[...]}
--   echo               echo lines until the other side closes; prints {"echo":[lines, err]}
--   sleep T            socket.sleep(T)
--   linger0            setoption("linger", {on=true, timeout=0}): close sends a reset
--   shutdown MODE      shutdown(MODE)
--   close              close the connection
-- Every wait is bounded (10 s); the script prints {"done":true} at the end.
local dir = arg[0]:match("^(.*/)") or "./"
package.path = dir .. "?.lua;" .. package.path
local socket = require("socket")
local C = require("common")

local LIMIT = 10
local mode, host = arg[1], arg[2]
local first, conn = 3, nil

if mode == "listen" then
  local server = assert(socket.bind(host, 0))
  local _, port = server:getsockname()
  C.emit('{"port":' .. tonumber(port) .. "}")
  server:settimeout(LIMIT)
  local err
  conn, err = server:accept()
  server:close()
  if not conn then
    C.emit('{"error":' .. C.encode(err) .. "}")
    os.exit(1)
  end
elseif mode == "connect" then
  local err
  conn, err = socket.connect(host, arg[3])
  first = 4
  if not conn then
    C.emit('{"error":' .. C.encode(err) .. "}")
    os.exit(1)
  end
else
  error("mode must be listen or connect")
end

conn:settimeout(LIMIT)
do
  local sip, sport = conn:getsockname()
  local pip, pport = conn:getpeername()
  C.emit(string.format('{"addr":{"sock":[%s,%d],"peer":[%s,%d]}}',
    C.encode(sip), tonumber(sport), C.encode(pip), tonumber(pport)))
end

for k = first, #arg do
  local w = C.words(arg[k])
  local op = w[1]
  if op == "send" then
    C.emit('{"send":' .. C.pack(nil, conn:send(C.unhex(w[2] or ""))) .. "}")
  elseif op == "sendrep" then
    C.emit('{"send":' .. C.pack(nil, conn:send(string.rep(C.unhex(w[2]), tonumber(w[3])))) .. "}")
  elseif op == "recv" then
    C.emit('{"recv":' .. C.pack(nil, conn:receive(C.pattern(w[2]))) .. "}")
  elseif op == "wait" then
    C.emit('{"wait":' .. C.pack(nil, conn:receive("*a")) .. "}")
  elseif op == "echo" then
    local lines = 0
    while true do
      local line, err, partial = conn:receive("*l")
      if not line then
        C.emit('{"echo":' .. C.pack(nil, lines, err, partial) .. "}")
        break
      end
      lines = lines + 1
      conn:send(line .. "\n")
    end
  elseif op == "sleep" then
    socket.sleep(tonumber(w[2]))
  elseif op == "linger0" then
    assert(conn:setoption("linger", { on = true, timeout = 0 }))
  elseif op == "shutdown" then
    conn:shutdown(w[2])
  elseif op == "close" then
    conn:close()
  else
    error("unknown action " .. tostring(op))
  end
end
conn:close()
C.emit('{"done":true}')
