-- LuaSec's ssl.https (Debian's pure-Lua file, unmodified) over socket.http,
-- against an HTTPS server. Run under real lua5.4 + LuaSec and under the
-- bridge: the lines must match.
-- arg[1]: the server's base URL (https://127.0.0.1:port); arg[2]: a
-- directory with ca.pem and otherca.pem.
local https = require "ssl.https"
local ltn12 = require "ltn12"

local base, dir = arg[1], arg[2]

local function show(label, ...)
  local parts = {}
  for i = 1, select("#", ...) do
    local v = select(i, ...)
    parts[i] = type(v) == "string" and (string.format("%q", v):gsub("\\\n", "\\n")) or tostring(v)
  end
  print(label .. " -> " .. table.concat(parts, " "))
end

local body, code, headers, status = https.request(base .. "/hello.txt")
show("simple", body, code, headers and headers["content-length"], status)

local t = {}
local r, c = https.request({
  url = base .. "/big.txt", sink = ltn12.sink.table(t),
  verify = "peer", cafile = dir .. "/ca.pem", protocol = "tlsv1_2",
})
local big = table.concat(t)
show("verified big", r, c, #big, big:sub(1, 30))

body, code = https.request(base .. "/echo", "a=1&b=2")
show("post", body, code)

r, c = https.request({ url = base .. "/hello.txt", verify = "peer", cafile = dir .. "/otherca.pem" })
show("wrong CA", r, c)

r, c, headers = https.request({ url = base .. "/redirect", sink = ltn12.sink.table({}) })
show("redirect not followed", r, c, headers and headers.location)
show("redirect option", https.request({ url = base .. "/redirect", redirect = true }))

local refused = base:gsub(":%d+$", ":1")
show("refused", https.request(refused .. "/"))
