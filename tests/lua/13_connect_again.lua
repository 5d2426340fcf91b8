-- A client whose connect is not done, or failed: what receive, send, select
-- and a second connect answer. LuaSocket asks the kernel each time (recv,
-- send and connect on the socket as it is), so a handshake still under way
-- is EAGAIN ("timeout", or a wait within the timeout), and a failure is
-- reported once, then "closed".
local socket = require("socket")
local U = require("util")

print("== connect pending: the server's accept queue is full")
-- listen(0) takes one connection into the queue; the kernel drops the SYNs
-- of the next ones until accept makes room (they retry after a second).
local srv = socket.tcp4()
assert(srv:bind("127.0.0.1", 0))
assert(srv:listen(0))
local _, port = srv:getsockname()
local fill = {}
for i = 1, 3 do
  fill[i] = socket.tcp4()
  fill[i]:settimeout(0)
  fill[i]:connect("127.0.0.1", port)
end
socket.sleep(0.1)
local c = socket.tcp4()
c:settimeout(0)
U.show("connect with settimeout(0)", c:connect("127.0.0.1", port))
U.show("  class", c.class)
U.show("  getpeername", c:getpeername())
U.show("  receive() at once", c:receive())
U.show("  receive(5) at once", c:receive(5))
U.show("  send at once", c:send("hello"))
c:settimeout(0.2)
U.show("  receive() within 0.2 s", c:receive())
U.show("  send within 0.2 s", c:send("hello"))
local r, w, e = socket.select({ c }, { c }, 0.1)
U.show("  select", #r, #w, e)
-- Room in the queue: the retried SYN (a second after the first) gets in,
-- and a send with a timeout waits for the handshake, then goes out.
for i = 1, 3 do fill[i]:close() end
srv:settimeout(1)
local first = srv:accept()
if first then first:close() end
c:settimeout(5)
U.show("  send, waiting for the handshake", c:send("hello\n"))
local a = srv:accept()
if a then a:settimeout(1) end
U.show("  the server got", a and a:receive())
if a then a:close() end
c:close()
srv:close()

print("== connect refused, then the same object again")
local free = U.free_port()
local function again(label, make, timeout)
  local o = make()
  o:settimeout(timeout)
  local res = table.pack(o:connect("127.0.0.1", free))
  if res[2] == "timeout" then
    socket.select(nil, { o }, 2)
    U.show(label .. ": connect (timeout 0)", table.unpack(res, 1, res.n))
    res = table.pack(o:connect("127.0.0.1", free))
  end
  U.show(label .. ": connect", table.unpack(res, 1, res.n))
  U.show("  receive", o:receive())
  U.show("  receive(5)", o:receive(5))
  U.show("  receive('*a')", o:receive("*a"))
  U.show("  send", o:send("abc"))
  U.show("  getpeername", o:getpeername())
  U.show("  shutdown", o:shutdown())
  for i = 1, 3 do
    local res2 = table.pack(o:connect("127.0.0.1", free))
    if res2[2] == "timeout" then
      socket.select(nil, { o }, 2)
      res2 = table.pack(o:connect("127.0.0.1", free))
    end
    U.show("  connect again #" .. i, table.unpack(res2, 1, res2.n))
  end
  o:close()
end
again("tcp()", socket.tcp, -1)
again("tcp() timeout 0.5", socket.tcp, 0.5)
again("tcp() timeout 0", socket.tcp, 0)
again("tcp4()", socket.tcp4, -1)
again("tcp4() timeout 0", socket.tcp4, 0)

print("== retry until the server is up, on one object")
local retry = socket.tcp()
retry:settimeout(1)
local up
for i = 1, 5 do
  local ok, err = retry:connect("127.0.0.1", free)
  U.show("try " .. i, ok, err)
  if ok then break end
  if i == 2 then up = socket.bind("127.0.0.1", free) end
end
if up then
  local s = up:accept()
  s:send("up\n")
  U.show("  receive", retry:receive())
  s:close(); up:close()
end
retry:close()
