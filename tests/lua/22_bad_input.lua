-- Bad input, table-driven: every socket call with wrong types, out-of-range
-- numbers, bad hosts, closed objects and odd select tables. Each call runs
-- under pcall and prints its results or its error; nothing may hang.
local socket = require("socket")
local U = require("util")

local huge = string.rep("a", 300)
-- (a port string goes to getaddrinfo, which takes it modulo 65536: "65537"
-- is port 1)
local values = {
  { "nil", nil }, { "true", true }, { "table", {} }, { "function", print },
  { "-1", -1 }, { "65536", 65536 }, { "1.5", 1.5 }, { "nan", 0 / 0 }, { "inf", math.huge },
  { "-inf", -math.huge }, { "2^63", 2 ^ 63 }, { "'65537'", "65537" }, { "''", "" },
  { "'x'", "x" }, { "300 chars", huge }, { "'1.2.3.4.5'", "1.2.3.4.5" }, { "'::g'", "::g" },
}

-- A fresh object of each class (closed ones included).
local function master() return assert(socket.tcp4()) end
local function server()
  local s = assert(socket.bind("127.0.0.1", 0))
  s:settimeout(0)
  return s
end
local function client()
  local c, a = U.pair()
  a:close()
  c:settimeout(0)
  return c
end
local function closed(make)
  return function()
    local o = make()
    o:close()
    return o
  end
end
local function udp()
  local u = assert(socket.udp4())
  u:settimeout(0)
  return u
end

local makers = {
  { "master", master }, { "server", server }, { "client", client },
  { "closed master", closed(master) }, { "closed client", closed(client) }, { "udp", udp },
}

-- Calls that take values: label, method, and where the bad value goes.
local calls = {
  { "bind(host)", "bind", function(v) return v, 0 end },
  { "bind(port)", "bind", function(v) return "127.0.0.1", v end },
  { "connect(host)", "connect", function(v) return v, 9 end },
  { "connect(port)", "connect", function(v) return "127.0.0.1", v end },
  { "listen(backlog)", "listen", function(v) return v end },
  { "settimeout(t)", "settimeout", function(v) return v end },
  { "settimeout(1, mode)", "settimeout", function(v) return 1, v end },
  { "receive(pattern)", "receive", function(v) return v end },
  { "receive('*l', prefix)", "receive", function(v) return "*l", v end },
  { "send(data)", "send", function(v) return v end },
  { "send('abc', i)", "send", function(v) return "abc", v end },
  { "send('abc', 1, j)", "send", function(v) return "abc", 1, v end },
  { "setoption(name)", "setoption", function(v) return v, true end },
  { "setoption('linger', v)", "setoption", function(v) return "linger", v end },
  { "setoption('keepalive', v)", "setoption", function(v) return "keepalive", v end },
  { "getoption(name)", "getoption", function(v) return v end },
  { "shutdown(how)", "shutdown", function(v) return v end },
  { "setstats(r)", "setstats", function(v) return v, 0, 0 end },
  { "setsockname(host)", "setsockname", function(v) return v, 0 end },
  { "setpeername(port)", "setpeername", function(v) return "127.0.0.1", v end },
  { "sendto(data, host, port)", "sendto", function(v) return "x", "127.0.0.1", v end },
  { "receivefrom(size)", "receivefrom", function(v) return v end },
}

local function outcome(ok, ...)
  if not ok then
    local e = ...
    return "ERROR: " .. tostring(e):gsub("^[^:]*:%d+: ", "")
  end
  local out = {}
  for i = 1, select("#", ...) do
    local v = select(i, ...)
    -- ports and descriptors vary per run: only their type is printed
    if type(v) == "number" and v > 1000 then v = "<large number>" end
    out[#out + 1] = U.fmt(v)
  end
  return table.concat(out, ", ")
end

for _, m in ipairs(makers) do
  for _, c in ipairs(calls) do
    for _, v in ipairs(values) do
      local obj = m[2]()
      local method = obj[c[2]]
      -- A number as a host is an IPv4 address to inet_aton ("1.5" is
      -- 1.0.0.5): never connect to one, only loopback is used here.
      local outward = c[1] == "connect(host)" and tonumber(v[2]) ~= nil
      if method ~= nil and not outward then
        local args = table.pack(c[3](v[2]))
        local r = outcome(pcall(function()
          local res = table.pack(method(obj, table.unpack(args, 1, args.n)))
          return table.unpack(res, 1, res.n)
        end))
        print(string.format("%s:%s %s -> %s", m[1], c[1], v[1], r))
      end
      obj:close()
    end
  end
end

print("== select with odd tables")
local c = client()
local cc = closed(client)()
local selects = {
  { "select(nil, nil, 0)", nil, nil, 0 },
  { "select({}, {}, 0)", {}, {}, 0 },
  { "select({closed}, {closed}, 0)", { cc }, { cc }, 0 },
  { "select({c, c}, nil, 0)", { c, c }, nil, 0 },
  { "select({c}, {c}, -1.5) writable", nil, { c }, -1.5 },
  { "select({1}, nil, 0)", { 1 }, nil, 0 },
  { "select({'x'}, nil, 0)", { "x" }, nil, 0 },
  { "select({{}}, nil, 0)", { {} }, nil, 0 },
  { "select('x')", "x" },
  { "select({}, 'x')", {}, "x" },
  { "select({}, {}, 'x')", {}, {}, "x" },
  { "select({}, {}, nan)", {}, {}, 0 / 0 },
}
for _, s in ipairs(selects) do
  local r = outcome(pcall(function()
    local rt, wt, e = socket.select(s[2], s[3], s[4])
    if type(rt) ~= "table" then return rt, wt, e end
    return #rt, #wt, e
  end))
  print(s[1] .. " -> " .. r)
end
c:close()

print("== module functions")
local mod = {
  { "socket.connect(nil, 80)", function() local r = table.pack(socket.connect(nil, 80)); return table.unpack(r, 1, r.n) end },
  { "socket.connect('127.0.0.1', -1)", function() local r = table.pack(socket.connect("127.0.0.1", -1)); return table.unpack(r, 1, r.n) end },
  { "socket.connect(300 chars, 80)", function() local r = table.pack(socket.connect(huge, 80)); return table.unpack(r, 1, r.n) end },
  { "socket.bind('127.0.0.1', 'x')", function() local r = table.pack(socket.bind("127.0.0.1", "x")); return table.unpack(r, 1, r.n) end },
  { "socket.sleep('x')", function() local r = table.pack(socket.sleep("x")); return table.unpack(r, 1, r.n) end },
  { "socket.sleep(-1)", function() local r = table.pack(socket.sleep(-1)); return table.unpack(r, 1, r.n) end },
  { "socket.dns.toip({})", function() local r = table.pack(socket.dns.toip({})); return table.unpack(r, 1, r.n) end },
  { "socket.dns.toip('')", function() local r = table.pack(socket.dns.toip("")); return table.unpack(r, 1, r.n) end },
  { "socket.dns.getaddrinfo(nil)", function() local r = table.pack(socket.dns.getaddrinfo(nil)); return table.unpack(r, 1, r.n) end },
  { "socket.skip('x')", function() local r = table.pack(socket.skip("x")); return table.unpack(r, 1, r.n) end },
  { "socket.newtry(1)", function() local r = table.pack(socket.newtry(1)); return table.unpack(r, 1, r.n) end },
  { "socket.tcp(1)", function() local r = table.pack(socket.tcp(1)); return table.unpack(r, 1, r.n) end },
}
for _, f in ipairs(mod) do
  local r = outcome(pcall(function()
    local res = table.pack(f[2]())
    -- (f does not tail-call: see DIFFERENCES on tail-called functions)
    for i = 1, res.n do
      if type(res[i]) == "userdata" then res[i] = tostring(res[i]):match("^(%a+{%a+})") end
    end
    return table.unpack(res, 1, res.n)
  end))
  print(f[1] .. " -> " .. r)
end
