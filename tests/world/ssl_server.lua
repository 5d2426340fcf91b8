-- A LuaSec TLS server for one client (openssl s_client in the tests): it
-- prints its port, then what it learns of the client, and answers each line
-- in upper case until "quit". Run under real lua5.4 + LuaSec and under the
-- bridge: the lines must match.
-- arg[1]: a directory with server.pem, server.key and ca.pem.
local socket = require "socket"
local ssl = require "ssl"

local dir = arg[1]
local function show(label, ...)
  local parts = {}
  for i = 1, select("#", ...) do
    local v = select(i, ...)
    parts[i] = type(v) == "string" and (string.format("%q", v):gsub("\\\n", "\\n")) or tostring(v)
  end
  print(label .. " -> " .. table.concat(parts, " "))
end

local server = assert(socket.bind("127.0.0.1", 0))
local _, port = server:getsockname()
print(port)
io.stdout:flush()

local ctx = assert(ssl.newcontext({
  mode = "server", protocol = "any",
  key = dir .. "/server.key", certificate = dir .. "/server.pem",
  cafile = dir .. "/ca.pem", verify = { "peer", "fail_if_no_peer_cert" },
  alpn = { "h2", "echo/1" },
}))
server:settimeout(10)
local tcp = assert(server:accept())
local conn = assert(ssl.wrap(tcp, ctx))
conn:settimeout(10)
show("handshake", conn:dohandshake())
show("sni", conn:getsniname())
show("alpn", conn:getalpn())
show("verification", conn:getpeerverification())
local cert = conn:getpeercertificate()
local names = {}
for _, e in ipairs(cert:subject()) do names[#names + 1] = e.name end
show("client subject", table.concat(names, ","))
show("client email", cert:extensions()["2.5.29.17"].rfc822Name[1])
show("client issuer is our CA", cert:issuer()[2].value == ssl.loadcertificate(
  assert(io.open(dir .. "/ca.pem")):read("a")):subject()[2].value)
while true do
  local line, err = conn:receive()
  show("line", line, err)
  if not line or line == "quit" then break end
  conn:send(line:upper() .. "\n")
end
local received, sent = conn:getstats()
show("stats", received, sent)
conn:close()
server:close()
