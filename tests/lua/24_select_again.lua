-- select over the same tables again and again, changed in place between
-- calls, as a dispatcher (Copas) does: readiness, order (buffered data first,
-- then by descriptor), entries removed, replaced, added, closed, listed twice;
-- and what dirty() says as bytes arrive.
local socket = require("socket")
local U = require("util")

local clients, recvt = {}, {}
for i = 1, 40 do -- more than 32: the size from which the engine keeps lists
  local c, a = U.pair()
  U.name(c, "C" .. i); U.name(a, "A" .. i)
  clients[i] = c
  recvt[i] = a
end
local A = {}
for i, a in ipairs(recvt) do A[i] = a end

local function ready(label, t, timeout)
  local r, _, err = socket.select(t, nil, timeout)
  local names = {}
  for i, s in ipairs(r) do names[i] = U.fmt(s) .. "@" .. math.tointeger(r[s]) end
  print(string.format("%-34s -> %s %s", label, table.concat(names, " "), tostring(err)))
end

ready("nothing yet", recvt, 0)
ready("nothing yet, again", recvt, 0)
clients[3]:send("x\n"); clients[7]:send("y\n")
socket.sleep(0.05)
ready("A3 and A7", recvt, 1)
ready("A3 and A7, again", recvt, 1)
U.show("A3:receive()", A[3]:receive())
ready("A7 left", recvt, 1)

print("== removed (the last moved into its place)")
recvt[7] = recvt[#recvt]; recvt[#recvt] = nil
ready("A7 gone", recvt, 0)

print("== replaced, same length")
clients[12]:send("z\n")
socket.sleep(0.05)
recvt[5] = A[7]
ready("A5 -> A7; A12 has data", recvt, 1)

print("== added at the end")
recvt[#recvt + 1] = A[5]
clients[5]:send("w\n")
socket.sleep(0.05)
ready("A5 back at the end", recvt, 1)

print("== buffered data first, in table order")
clients[20]:send("1\n2\n")
clients[30]:send("3\n4\n")
socket.sleep(0.05)
U.show("A30:receive()", A[30]:receive())
U.show("A20:receive()", A[20]:receive())
ready("A20 A30 dirty, then by fd", recvt, 1)
for _, i in ipairs({ 5, 7, 12, 20, 30 }) do A[i]:receive() end
ready("all read", recvt, 0)

print("== a closed entry, a doubled entry")
clients[9]:send("v\n")
socket.sleep(0.05)
A[9]:close()
ready("A9 closed", recvt, 0)
recvt[#recvt + 1] = A[10]
clients[10]:send("u\n")
socket.sleep(0.05)
ready("A10 listed twice", recvt, 1)

print("== the same table to write")
local w = select(2, socket.select(nil, recvt, 1))
U.show("writable count", #w)
local w2 = select(2, socket.select(nil, recvt, 1))
U.show("writable count, again", #w2, w2[A[1]] ~= nil, w2[A[9]] ~= nil)

print("== peer closes")
clients[15]:close()
socket.sleep(0.05)
ready("A15 at end of stream", recvt, 1)
U.show("A15:receive()", A[15]:receive())

print("== dirty(): LuaSocket's own buffer, not bytes that arrived since")
local c, a = U.pair()
c:send("a\nb\n")
socket.sleep(0.05)
U.show("receive, dirty", a:receive(), a:dirty())
c:send("c\n")
socket.sleep(0.05)
U.show("receive what was left, dirty", a:receive(), a:dirty())
U.show("receive from the kernel, dirty", a:receive(), a:dirty())
c:send("d\ne\n")
socket.sleep(0.05)
U.show("receive(0), dirty", a:receive(0), a:dirty())
U.show("receive(2), dirty", a:receive(2), a:dirty())
U.show("receive(2), dirty", a:receive(2), a:dirty())
c:close(); a:close()

for i = 1, 40 do clients[i]:close(); A[i]:close() end
