-- LuaSocket's socket.ftp (Debian's pure-Lua file, unmodified) against a real
-- FTP server on 127.0.0.1:PORT (user "user", password "pass"): uploads in
-- the table and URL forms, downloads back, a listing, errors.
--   lua5.4 ftp_client.lua PORT TAG
local ftp = require("socket.ftp")
local ltn12 = require("ltn12")
local port, tag = tonumber(arg[1]), arg[2]

local data = {}
for i = 1, 20000 do data[i] = string.format("%05d ", i) end
data = table.concat(data) .. "\r\n\0binary\255"

print("put table", ftp.put({
  host = "127.0.0.1", port = port, user = "user", password = "pass",
  path = tag .. "-a.bin", type = "i", source = ltn12.source.string(data),
}))
local got = {}
print("get table", ftp.get({
  host = "127.0.0.1", port = port, user = "user", password = "pass",
  path = tag .. "-a.bin", type = "i", sink = ltn12.sink.table(got),
}))
print("same bytes", table.concat(got) == data, #table.concat(got))

local url = "ftp://user:pass@127.0.0.1:" .. port .. "/" .. tag .. "-b.txt;type=i"
print("put url", ftp.put(url, "short text\n"))
print("get url", ftp.get(url))

local listing = {}
print("list", ftp.get({
  host = "127.0.0.1", port = port, user = "user", password = "pass",
  command = "nlst", sink = ltn12.sink.table(listing),
}))
local names = {}
for name in table.concat(listing):gmatch("[^\r\n]+") do
  if name:sub(1, #tag) == tag then names[#names + 1] = name end
end
table.sort(names)
print("names", table.concat(names, " "))
print("missing file", ftp.get("ftp://user:pass@127.0.0.1:" .. port .. "/nothing-here;type=i"))
print("bad password", ftp.get("ftp://user:wrong@127.0.0.1:" .. port .. "/" .. tag .. "-b.txt"))
