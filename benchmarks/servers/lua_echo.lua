-- A LuaSocket line echo server for `python -m aioluasock run`: one task per
-- client (aioluasock.spawn), each a plain blocking LuaSocket loop.
-- Usage: python -m aioluasock run lua_echo.lua [PORT]   (PORT 0 or absent: any)
-- Prints "READY <port>" once listening.
local socket = require "socket"
local aio = require "aioluasock"

local server = assert(socket.bind("127.0.0.1", tonumber(arg[1]) or 0))
local _, port = server:getsockname()
print("READY " .. port)
io.stdout:flush()

local function serve(client)
  client:setoption("tcp-nodelay", true)
  while true do
    local line, err = client:receive("*l")
    if not line then break end
    local _, serr = client:send(line .. "\n")
    if serr then break end
  end
  client:close()
end

while true do
  local client = server:accept()
  if client then aio.spawn(serve, client) end
end
