-- Both ends of TLS connections in one script, driven by non-blocking
-- handshakes and select, as a LuaSec program without threads does it; then
-- receive patterns, partials and timeouts over TLS, and handshake failures.
-- Run under real lua5.4 + LuaSec and under the bridge: the lines must match.
-- arg[1]: a directory with ca.pem, server.pem, server.key, otherca.pem,
-- old.pem, old.key, client.pem, client.key (made by the test with trustme).
local socket = require "socket"
local ssl = require "ssl"

local dir = arg[1]
local function path(name) return dir .. "/" .. name end

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

-- A connected pair of TCP objects.
local function pair()
  local client = socket.tcp()
  client:settimeout(0)
  client:connect("127.0.0.1", port)
  server:settimeout(5)
  local peer = assert(server:accept())
  client:settimeout(5)
  return client, peer
end

local server_params = {
  mode = "server", protocol = "any", key = path("server.key"), certificate = path("server.pem"),
  alpn = { "echo/1", "h2" },
}
local client_params = {
  mode = "client", protocol = "any", verify = "peer", cafile = path("ca.pem"),
  options = { "all", "no_sslv3" }, alpn = { "echo/1" },
}

-- Handshake both ends with timeout 0, selecting until both are done; the
-- results of the last calls are returned. Counts of wantread vary with
-- timing and are not printed.
local function handshake_both(c, s)
  c:settimeout(0)
  s:settimeout(0)
  local done = {}
  local results = {}
  for _ = 1, 200 do
    for name, conn in pairs({ c = c, s = s }) do
      if not done[name] then
        local ok, err = conn:dohandshake()
        if ok or (err ~= "wantread" and err ~= "wantwrite") then
          done[name] = true
          results[name] = { ok, err }
        end
      end
    end
    if done.c and done.s then break end
    local wait = {}
    if not done.c then wait[#wait + 1] = c end
    if not done.s then wait[#wait + 1] = s end
    socket.select(wait, nil, 1)
  end
  return results.c, results.s
end

do
  -- A table given to select before and after wrap (a dispatcher's): the
  -- wrapped TCP object has no descriptor left, so it is never ready.
  local tc, ts = pair()
  local watched = { tc }
  show("select before wrap", #socket.select(watched, nil, 0))
  local c = assert(ssl.wrap(tc, client_params))
  ts:send("plain\n")
  local r, _, err = socket.select(watched, nil, 0.2)
  show("select after wrap", #r, err)
  c:close(); ts:close()
end

do
  local tc, ts = pair()
  local c = assert(ssl.wrap(tc, client_params))
  local sctx = assert(ssl.newcontext(server_params))
  local s = assert(ssl.wrap(ts, sctx))
  show("tcp after wrap", tc:getfd(), tc:receive(1))
  show("before handshake", c:receive(1))
  show("send before handshake", c:send("abc"))
  show("peer cert before", c:getpeercertificate())
  show("verification before", c:getpeerverification())
  c:sni("localhost")
  local rc, rs = handshake_both(c, s)
  show("handshake", rc[1], rc[2], rs[1], rs[2])
  show("again", c:dohandshake())
  show("verification", c:getpeerverification())
  show("server verification", s:getpeerverification())
  show("server peer cert", s:getpeercertificate())
  show("alpn", c:getalpn(), s:getalpn())
  show("sni", c:getsniname())
  show("protocol", c:info("protocol"), s:info().protocol)
  local cert = c:getpeercertificate()
  local subject = {}
  for _, e in ipairs(cert:subject()) do subject[#subject + 1] = e.name .. "=" .. e.value:sub(1, 16) end
  show("subject", table.concat(subject, ","))
  local names = {}
  for kind, list in pairs(cert:extensions()["2.5.29.17"]) do
    if kind ~= "name" then for _, v in ipairs(list) do names[#names + 1] = kind .. ":" .. v end end
  end
  table.sort(names)
  show("alt names", table.concat(names, ","))
  show("dates", cert:notbefore(), cert:notafter())
  show("digest matches pem", ssl.loadcertificate(cert:pem()):digest("sha256") == cert:digest("sha256"))

  c:settimeout(5)
  s:settimeout(5)
  -- Patterns, several sends, partials and a prefix resumed after a timeout.
  show("send", c:send("one\r\ntwo\nthree"))
  show("send range", c:send("0123456789", 3, 6))
  show("receive *l", s:receive("*l"))
  show("receive *l", s:receive())
  show("receive n", s:receive(5))
  s:settimeout(0.1)
  show("receive timeout", s:receive(10))
  show("dirty", s:dirty())
  s:settimeout(5)
  show("send more", c:send("456789"))
  show("receive prefix", s:receive(10, "2345"))
  show("select idle", #select(1, socket.select({ s }, nil, 0)))
  c:send("ready\n")
  local r = socket.select({ s }, nil, 5)
  show("select ready", r[1] == s, r[s])
  local _, w = socket.select(nil, { c }, 1)
  show("select writable", w[1] == c)
  show("receive ready", s:receive())
  local big = string.rep("0123456789abcdef", 40000)
  c:settimeout(0)
  local sent, err, last = c:send(big)
  local total = sent or last
  while total < #big do
    socket.select(nil, { c }, 1)
    local got = s:receive(0)
    local n, e, l = c:send(big, total + 1)
    total = n or l
    s:settimeout(0)
    local chunk, e2, partial = s:receive(#big)
    s:settimeout(5)
    big_got = (big_got or "") .. (chunk or partial)
  end
  s:settimeout(5)
  local rest = s:receive(#big - #(big_got or ""))
  show("big", (big_got or "") .. rest == big)
  local received, sent_count = s:getstats()
  show("stats", received, (select(2, c:getstats())))
  c:settimeout(5)
  c:send("bye")
  show("close", c:close())
  show("after close", c:receive(1))
  show("closed getfd", c:getfd(), c:dirty(), tostring(c):match("%(closed%)"))
  show("peer *a", s:receive("*a"))
  s:close()
end

-- A client that trusts another CA: the handshake fails.
do
  local tc, ts = pair()
  local c = assert(ssl.wrap(tc, { mode = "client", protocol = "any", verify = "peer", cafile = path("otherca.pem") }))
  local s = assert(ssl.wrap(ts, server_params))
  local rc, rs = handshake_both(c, s)
  show("wrong CA", rc[1], rc[2])
  show("wrong CA server", rs[1])
  show("after failure", c:receive(1))
  c:close()
  s:close()
end

-- An expired certificate.
do
  local tc, ts = pair()
  local c = assert(ssl.wrap(tc, { mode = "client", protocol = "any", verify = "peer", cafile = path("ca.pem") }))
  local s = assert(ssl.wrap(ts, { mode = "server", protocol = "any", key = path("old.key"), certificate = path("old.pem") }))
  local rc = handshake_both(c, s)
  show("expired", rc[1], rc[2])
  c:close()
  s:close()
end

-- A server that requires a client certificate, and a client that has one.
do
  local tc, ts = pair()
  local c = assert(ssl.wrap(tc, {
    mode = "client", protocol = "tlsv1_2", key = path("client.key"), certificate = path("client.pem"),
    verify = "none",
  }))
  local s = assert(ssl.wrap(ts, {
    mode = "server", protocol = "any", key = path("server.key"), certificate = path("server.pem"),
    verify = { "peer", "fail_if_no_peer_cert" }, cafile = path("ca.pem"),
  }))
  local rc, rs = handshake_both(c, s)
  show("client cert", rc[1], rs[1], s:info("protocol"))
  local cert = s:getpeercertificate()
  local alt = cert:extensions()["2.5.29.17"]
  show("client cert names", alt.rfc822Name and alt.rfc822Name[1])
  show("client verification", s:getpeerverification())
  c:close()
  s:close()
end

-- The handshake times out when the peer says nothing.
do
  local tc, ts = pair()
  local c = assert(ssl.wrap(tc, { mode = "client", protocol = "any" }))
  c:settimeout(0.2)
  show("handshake timeout", c:dohandshake())
  c:close()
  ts:close()
end

-- The peer closes during the handshake.
do
  local tc, ts = pair()
  local c = assert(ssl.wrap(tc, { mode = "client", protocol = "any" }))
  ts:close()
  c:settimeout(5)
  local ok, err = c:dohandshake()
  show("peer closed", ok, err == "closed" or err == "unexpected eof while reading" or err)
  c:close()
end

-- Contexts that cannot be made. (Where LuaSec's reason in parentheses is
-- whatever OpenSSL's error queue held, only the text before it is shown.)
local function head(v, err) return v, err and err:match("^[^(]*") end
show("no key file", head(ssl.newcontext({ mode = "server", protocol = "any", key = path("missing.key"), certificate = path("server.pem") })))
show("mismatch", ssl.newcontext({ mode = "server", protocol = "any", key = path("server.key"), certificate = path("client.pem") }))
local function made(ctx, err) return ctx ~= nil, err end
local function server_with(extra)
  local params = { mode = "server", protocol = "any", key = path("server.key"), certificate = path("server.pem") }
  for k, v in pairs(extra) do params[k] = v end
  return ssl.newcontext(params)
end
show("password", made(server_with({ key = path("encrypted.key"), password = "secret" })),
  (made(server_with({ key = path("encrypted.key"), password = function() return "secret" end }))))
show("wrong password", server_with({ key = path("encrypted.key"), password = "wrong" }))
show("not a key", head(server_with({ key = path("server.pem") })))
show("options", made(server_with({ ciphers = "HIGH:!aNULL", options = { "no_tlsv1", "no_ticket", "single_ecdh_use" },
  curve = "prime256v1", depth = 4, verify = "none" })))
show("curve", server_with({ curve = "nocurve" }))
show("protocol", ssl.newcontext({ mode = "client", protocol = "tlsv9" }))
show("verify", ssl.newcontext({ mode = "client", protocol = "any", verify = { "peer", "bogus" } }))
show("option", ssl.newcontext({ mode = "client", protocol = "any", options = "bogus" }))
show("alpn empty", ssl.newcontext({ mode = "client", protocol = "any", alpn = {} }))
show("password type", ssl.newcontext({ mode = "client", protocol = "any", key = path("server.key"), password = 3 }))
show("cafile", head(ssl.newcontext({ mode = "client", protocol = "any", cafile = path("missing.pem") })))
show("ciphers", head(ssl.newcontext({ mode = "client", protocol = "any", ciphers = "NOTACIPHER" })))
show("bad mode", ssl.wrap(socket.tcp(), { mode = "bogus", protocol = "any" }))
local ok, err = pcall(ssl.wrap, socket.tcp(), 3)
show("bad context", ok, err:match("bad argument.*"))
server:close()
print("done")
