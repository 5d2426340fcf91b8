-- Polling with settimeout(0): receive, send, accept see what the kernel holds,
-- and a "timeout" hands out no more than its pattern could have taken.
local socket = require("socket")
local U = require("util")

-- Poll `f` (which returns the results of one call) until its second result
-- is not "timeout", at most `limit` times; returns the polls made and the
-- last results.
local function poll(limit, f)
  local r
  for i = 1, limit do
    r = table.pack(f())
    if r[2] ~= "timeout" then return i, table.unpack(r, 1, r.n) end
  end
  return limit, table.unpack(r, 1, r.n)
end

print("== receive right after the peer sent")
local c, s = U.pair()
s:send("hello\nworld\n")
c:settimeout(0)
local polls, line, err = poll(3, function() return c:receive("*l") end)
U.show("*l within 3 polls", line, err, polls <= 3)
U.show("  the next line", c:receive("*l"))
s:send("12345678")
polls, line, err = poll(3, function() return c:receive(5) end)
U.show("5 bytes within 3 polls", line, err, polls <= 3)
U.show("  the rest, as a partial", c:receive(5))

print("== a line in two halves, resumed with the partial")
s:send("first half, ")
local part
local timeouts = 0
for _ = 1, 3 do
  local data, e, p = c:receive("*l", part)
  if data then break end
  part = p
  timeouts = timeouts + 1
end
U.show("after the first half", timeouts, part)
s:send("second half\nnext\n")
polls, line, err = poll(3, function()
  local data, e, p = c:receive("*l", part)
  if not data then part = p end
  return data, e
end)
U.show("the whole line", line, err, polls <= 3)
U.show("  then", c:receive("*l"))
c:close(); s:close()

print("== accept with settimeout(0)")
local srv, port = U.server()
srv:settimeout(0)
U.show("nothing pending", srv:accept())
local client = socket.tcp4()
client:connect("127.0.0.1", port)
local conn
polls, conn = poll(3, function() return srv:accept() end)
U.show("pending connection within 3 polls", conn ~= nil, polls <= 3)
if conn then conn:close() end
client:close(); srv:close()

print("== 1 MB through select, both ends with settimeout(0)")
-- What copas.receive / copas.send do: the sender resumes send(data, i) from
-- the index it got back, the receiver resumes receive(n, partial).
local size = 1024 * 1024
local chunk = string.rep("0123456789abcdef", 64)
local body = string.rep(chunk, size // #chunk)
local rx, tx = U.pair()
rx:settimeout(0); tx:settimeout(0)
local sent, got, partial, rounds, stalled = 0, nil, nil, 0, false
while not got and rounds < 100000 do
  rounds = rounds + 1
  local sendt = sent < size and { tx } or {}
  local r, w = socket.select({ rx }, sendt, 2)
  if #r == 0 and #w == 0 then stalled = true; break end
  if #w > 0 then
    local last, e, lastpart = tx:send(body, sent + 1)
    sent = math.tointeger(last or lastpart)
  end
  if #r > 0 then
    local data, e, p = rx:receive(size, partial)
    if data then got = data else partial = p end
  end
end
U.show("all sent", sent == size, "all received", got ~= nil and #got == size, "stalled", stalled)
U.show("  bytes intact", got == body)
rx:close(); tx:close()
