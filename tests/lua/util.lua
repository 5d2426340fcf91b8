-- Shared helpers of the differential corpus: print answers in a stable form
-- (sockets by class, numbers with their subtype, strings with %q), so that
-- real lua5.4 + LuaSocket 3.1 and the aioluasock bridge can be compared line
-- for line. Addresses and ports vary per run and are never printed.
local socket = require("socket")
local M = {}

M.names = setmetatable({}, { __mode = "k" })

local function fmt(v)
  local t = type(v)
  if M.names[v] then return M.names[v] end
  if t == "string" then
    return (string.format("%q", v):gsub("\\\n", "\\n"))
  elseif t == "boolean" then
    return tostring(v)
  elseif t == "number" then
    return tostring(v) .. "<" .. (math.type(v) or "?") .. ">"
  elseif t == "table" then
    local parts, n = {}, 0
    for i = 1, #v do n = i; parts[#parts + 1] = "[" .. i .. "]=" .. fmt(v[i]) end
    local hash = {}
    for k, x in pairs(v) do
      if not (math.type(k) == "integer" and k >= 1 and k <= n) then
        hash[#hash + 1] = "[" .. fmt(k) .. "]=" .. fmt(x)
      end
    end
    table.sort(hash)
    for _, h in ipairs(hash) do parts[#parts + 1] = h end
    return "{" .. table.concat(parts, ", ") .. "}"
  elseif t == "userdata" then
    local s = tostring(v)
    return s:match("^(%a+{%a+})") or s
  end
  return t
end
M.fmt = fmt

function M.name(v, name) M.names[v] = name; return v end

function M.show(label, ...)
  local n = select("#", ...)
  local out = {}
  for i = 1, n do out[#out + 1] = fmt((select(i, ...))) end
  print(string.format("%-40s -> n=%d: %s", label, n, table.concat(out, ", ")))
end

-- Run f under pcall: its results, or the error message.
function M.try(label, f, ...)
  local res = table.pack(pcall(f, ...))
  if res[1] then
    M.show(label, table.unpack(res, 2, res.n))
  else
    local e = res[2]
    if type(e) ~= "string" then e = "(" .. type(e) .. ") " .. fmt(e) end
    print(string.format("%-40s -> ERROR: %s", label, e))
  end
end

function M.server(host)
  local srv = assert(socket.bind(host or "127.0.0.1", 0))
  local _, port = srv:getsockname()
  return srv, tonumber(port)
end

-- A connected (client, accepted) pair on loopback; the connect completes in
-- the kernel's backlog, so one thread can do it.
function M.pair()
  local srv, port = M.server()
  local c = assert(socket.connect("127.0.0.1", port))
  srv:settimeout(2)
  local a = assert(srv:accept())
  srv:close()
  return c, a, port
end

-- A port nobody listens on.
function M.free_port()
  local s = assert(socket.bind("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return port
end

return M
