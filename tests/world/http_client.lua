-- LuaSocket's own socket.http (Debian's pure-Lua file, unmodified) against a
-- real nginx: the simple and the ltn12 forms, chunked bodies, redirects, a
-- large PUT read back, errors. Prints one stable line per request.
--   lua5.4 http_client.lua BASE_URL TAG
local http = require("socket.http")
local ltn12 = require("ltn12")
local base, tag = arg[1], arg[2]

local function show(label, ...)
  local out = {}
  for i = 1, select("#", ...) do
    local v = select(i, ...)
    out[i] = type(v) == "string" and string.format("%q", v):gsub("\\\n", "\\n") or tostring(v)
    if type(v) == "table" then out[i] = "table" end
  end
  print(label .. " -> " .. table.concat(out, " "))
end

local body, code, headers, status = http.request(base .. "/hello.txt")
show("simple", body, code, headers["content-length"], headers["content-type"], status)

local t = {}
local r, c, h = http.request({ url = base .. "/big.txt", sink = ltn12.sink.table(t) })
local big = table.concat(t)
show("sink", r, c, #big, h["content-length"])

body, code, headers = http.request(base .. "/chunked/hello.txt")
show("chunked", body, code, headers["transfer-encoding"], headers["content-length"])
t = {}
r, c = http.request({ url = base .. "/chunked/big.txt", sink = ltn12.sink.table(t) })
local rewritten = big:gsub("nginx", "NGINX")
show("chunked big", r, c, #table.concat(t), table.concat(t) == rewritten)

body, code = http.request(base .. "/redirect")
show("redirect followed", body, code)
r, c, h = http.request({ url = base .. "/redirect", redirect = false, sink = ltn12.sink.null() })
show("redirect not followed", r, c, h.location and h.location:match("/hello%.txt$"))
body, code = http.request(base .. "/redirect-loop")
show("redirect loop", body and #body > 0, code)

local payload = string.rep(big, 3)
r, c = http.request({
  url = base .. "/up/" .. tag .. ".bin",
  method = "PUT",
  source = ltn12.source.string(payload),
  headers = { ["content-length"] = #payload },
})
show("put", r, c)
body, code = http.request(base .. "/up/" .. tag .. ".bin")
show("get back", code, body and #body, body == payload)

body, code = http.request(base .. "/echo", "a=1&b=2")
show("post", body, code)
t = {}
r, c = http.request({
  url = base .. "/echo",
  headers = { ["user-agent"] = "corpus-agent" },
  sink = ltn12.sink.table(t),
})
show("headers", r, c, table.concat(t))
body, code, headers = http.request(base .. "/missing")
show("404", body and #body > 0, code, headers and headers["content-type"])
body, code = http.request("http://user:pass@" .. base:match("^http://(.*)$") .. "/auth")
show("basic auth", body, code)
r, c = http.request({ url = base .. "/hello.txt", method = "HEAD", sink = ltn12.sink.table(t) })
show("head", r, c)
show("refused", http.request(arg[3]))
http.TIMEOUT = 0.3
show("timeout", http.request(arg[4]))
