-- select over big tables that change between calls, in the ways the
-- bridge's kept lists must follow: one table as both lists of one call, a
-- foreign object (a table with getfd) coming and going, a table shrinking
-- under 32 entries and growing again, waits that time out.
local socket = require("socket")
local U = require("util")

local clients, A, t = {}, {}, {}
for i = 1, 36 do
  local c, a = U.pair()
  U.name(c, "C" .. i); U.name(a, "A" .. i)
  clients[i], A[i], t[i] = c, a, a
end

local function names(list)
  local out = {}
  for i, s in ipairs(list) do out[i] = U.fmt(s) .. "@" .. math.tointeger(list[s]) end
  return table.concat(out, " ")
end

local function show(label, r, w, err)
  print(string.format("%-40s -> r: %s | w: %d %s", label, names(r), #w, tostring(err)))
end

show("both lists, one table", socket.select(t, t, 1))
clients[4]:send("x\n")
socket.sleep(0.05)
show("both lists, A4 readable", socket.select(t, t, 1))
show("only reading, A4", socket.select(t, nil, 1))
show("nothing new, waits 0.05", socket.select({ A[1], A[2] }, nil, 0.05))

print("== a foreign object comes and goes")
local foreign = { getfd = function() return A[4]:getfd() end, dirty = function() return false end }
t[#t + 1] = foreign
show("with the foreign object", socket.select(t, nil, 1))
t[#t] = nil
show("without it", socket.select(t, nil, 1))
U.show("A4:receive()", A[4]:receive())
show("nothing, waits 0.05", socket.select(t, nil, 0.05))

print("== shrinking under 32, growing again")
for i = #t, 11, -1 do t[i] = nil end
clients[2]:send("y\n"); clients[20]:send("z\n")
socket.sleep(0.05)
show("10 left: A2", socket.select(t, nil, 1))
for i = 11, 36 do t[i] = A[i] end
show("36 again: A2 A20", socket.select(t, nil, 1))
t[2], t[20] = t[20], t[2]
show("A2 and A20 swapped", socket.select(t, nil, 1))
A[2]:receive(); A[20]:receive()
show("all read, waits 0.05", socket.select(t, nil, 0.05))

print("== a fresh table each call")
for round = 1, 3 do
  local fresh = {}
  for i = 1, 36 do fresh[i] = A[(i + round) % 36 + 1] end
  clients[round * 5]:send("r\n")
  socket.sleep(0.05)
  show("fresh table, round " .. round, socket.select(fresh, nil, 1))
  A[round * 5]:receive()
end

for i = 1, 36 do clients[i]:close(); A[i]:close() end
