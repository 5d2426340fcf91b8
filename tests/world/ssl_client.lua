-- A LuaSec TLS client of openssl s_server -rev (which sends each line back
-- reversed). Run under real lua5.4 + LuaSec and under the bridge: the lines
-- must match.
-- arg[1]: the server's port; arg[2]: a directory with ca.pem.
local socket = require "socket"
local ssl = require "ssl"

local port, dir = arg[1], arg[2]
local function show(label, ...)
  local parts = {}
  for i = 1, select("#", ...) do
    local v = select(i, ...)
    parts[i] = type(v) == "string" and (string.format("%q", v):gsub("\\\n", "\\n")) or tostring(v)
  end
  print(label .. " -> " .. table.concat(parts, " "))
end

local tcp = assert(socket.connect("127.0.0.1", port))
local conn = assert(ssl.wrap(tcp, {
  mode = "client", protocol = "tlsv1_3", verify = "peer", cafile = dir .. "/ca.pem",
  alpn = { "echo/1", "h2" },
}))
conn:sni("localhost")
conn:settimeout(10)
show("handshake", conn:dohandshake())
show("verification", conn:getpeerverification())
show("alpn", conn:getalpn())
local info = conn:info()
show("info", info.protocol, info.cipher, info.bits, info.algbits, info.key, info.encryption, info.mac, info.export)
local cert = conn:getpeercertificate()
show("cert", cert:notbefore(), cert:notafter(), #cert:serial() > 0, cert:getsignaturename())
show("pubkey", select(2, cert:pubkey()))
show("digest", cert:digest() == cert:digest("sha1"), #cert:digest("sha512"), cert:digest("md4"))
show("send", conn:send("hello world\n"))
show("receive", conn:receive("*l"))
show("send", conn:send("abc\ndef\n"))
show("receive", conn:receive(4))
show("receive", conn:receive("*l"))
conn:settimeout(0.2)
show("receive timeout", conn:receive())
show("stats", (conn:getstats()))
conn:close()
