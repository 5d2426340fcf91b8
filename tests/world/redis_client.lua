-- redis-lua (Debian's lua-redis, unmodified) against a real redis-server on
-- 127.0.0.1:PORT: commands and their reply parsers, a pipeline, a
-- transaction, pub/sub through its coroutine.wrap consumer, a large value.
--   lua5.4 redis_client.lua PORT PREFIX
package.path = package.path .. ";/usr/share/lua/5.3/?.lua"
local redis = require("redis")
local port, prefix = tonumber(arg[1]), arg[2]

local function show(label, v)
  local function fmt(x)
    if type(x) == "table" then
      local keys = {}
      for k in pairs(x) do keys[#keys + 1] = k end
      table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
      local out = {}
      for _, k in ipairs(keys) do out[#out + 1] = tostring(k) .. "=" .. fmt(x[k]) end
      return "{" .. table.concat(out, ",") .. "}"
    end
    return type(x) == "string" and string.format("%q", x) or tostring(x)
  end
  print(label .. " -> " .. fmt(v))
end

local client = redis.connect("127.0.0.1", port)
local function key(k) return prefix .. ":" .. k end
local all = { "a", "n", "list", "h", "z", "s", "big", "p1", "p2", "t1" }
for i, k in ipairs(all) do all[i] = key(k) end
client:del(table.unpack(all))
show("ping", client:ping())
show("set", client:set(key("a"), "value with\r\nbinary\0bytes"))
show("get", client:get(key("a")))
show("get missing", client:get(key("missing")))
show("incr", client:incr(key("n")))
show("incrby", client:incrby(key("n"), 41))
show("exists", client:exists(key("a")))
show("del", client:del(key("a")))
show("exists after del", client:exists(key("a")))
show("rpush", client:rpush(key("list"), "x", "y", "z"))
show("lrange", client:lrange(key("list"), 0, -1))
show("hmset", client:hmset(key("h"), { f1 = "v1", f2 = "v2" }))
show("hgetall", client:hgetall(key("h")))
show("zadd", client:zadd(key("z"), 1, "one", 2, "two"))
show("zrange withscores", client:zrange(key("z"), 0, -1, "withscores"))
show("sadd", client:sadd(key("s"), "m1", "m2", "m1"))
show("smembers count", #client:smembers(key("s")))

local big = string.rep("0123456789abcdef", 65536) -- 1 MiB
show("set big", client:set(key("big"), big))
show("get big", client:get(key("big")) == big)

-- (redis-lua's pipeline inserts each command's reply parser at its index
-- with table.insert, which Lua 5.4 refuses after a command without one: the
-- pipeline holds commands that all have parsers)
client:set(key("p1"), "one")
local replies, count = client:pipeline(function(p)
  p:exists(key("p1"))
  p:expire(key("p1"), 100)
  p:exists(key("nothing"))
  p:persist(key("p1"))
  p:renamenx(key("p1"), key("p2"))
  p:exists(key("p2"))
end)
show("pipeline count", count)
show("pipeline replies", replies)

local tx = client:transaction(function(t)
  t:set(key("t1"), "a")
  t:append(key("t1"), "b")
  t:get(key("t1"))
end)
show("transaction", tx)

local ok, err = pcall(client.incr, client, key("list"))
show("wrong type error", (not ok) and tostring(err):match("WRONGTYPE") ~= nil)

local publisher = redis.connect("127.0.0.1", port)
local subscriber = redis.connect("127.0.0.1", port)
local seen = {}
for message, abort in subscriber:pubsub({ subscribe = { key("ch1"), key("ch2") } }) do
  if message.kind == "unsubscribe" then
    -- (redis-server unsubscribes from all channels in its hash table's order)
    seen[#seen + 1] = "unsubscribe, " .. tostring(message.payload) .. " left"
  else
    seen[#seen + 1] = message.kind .. " " .. message.channel:sub(#prefix + 2) .. " " .. tostring(message.payload)
  end
  if message.kind == "subscribe" and message.channel == key("ch2") then
    publisher:publish(key("ch1"), "first")
    publisher:publish(key("ch2"), "second")
    publisher:publish(key("ch1"), "quit")
  elseif message.kind == "message" and message.payload == "quit" then
    abort()
  end
end
show("pubsub", seen)
show("cleanup", client:del(table.unpack(all)))
client:quit()
publisher:quit()
