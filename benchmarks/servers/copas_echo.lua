-- Copas line echo server on real LuaSocket: the LuaSocket-world peer of the suite.
--
--   lua5.4 benchmarks/servers/copas_echo.lua PORT
--
-- Prints "READY <port>" once listening on 127.0.0.1 (PORT 0 = ephemeral).
-- Debian's lua-copas installs for Lua 5.1-5.3 only; Copas is pure Lua, so its
-- directories are added to package.path. LuaSocket 3 creates the descriptor of
-- socket.tcp() lazily (setoption before bind fails), hence socket.tcp4().
-- Copas waits with select(): past about 1000 descriptors (FD_SETSIZE) it fails.
for _, v in ipairs({ "5.3", "5.2", "5.1" }) do
  package.path = package.path .. ";/usr/share/lua/" .. v .. "/?.lua;/usr/share/lua/" .. v .. "/?/init.lua"
end
local socket = require("socket")
local copas = require("copas")

local port = tonumber(arg[1]) or 0
local server = assert(socket.tcp4())
assert(server:setoption("reuseaddr", true))
assert(server:bind("127.0.0.1", port))
assert(server:listen(1024))
local _, bound = server:getsockname()
io.write("READY ", bound, "\n")
io.flush()

copas.addserver(server, function(raw)
  raw:setoption("tcp-nodelay", true)
  local client = copas.wrap(raw)
  while true do
    local line = client:receive("*l")
    if not line then break end
    if not client:send(line .. "\n") then break end
  end
  raw:close()
end)
copas.loop()
