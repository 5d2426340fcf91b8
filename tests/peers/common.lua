-- Shared helpers of the Lua peers used by tests/test_against_luasocket.py.
--
-- Output is one JSON object per line (flushed at once) so that the Python
-- side can read it with json.loads. Lua strings are byte strings: every byte
-- that is not printable ASCII is written as \u00XX, so Python decodes a Lua
-- string into a str whose code points are the bytes (latin-1).
local M = {}

local function encode_string(s)
  return '"' .. (s:gsub('[%c"\\\128-\255]', function(c)
    return string.format("\\u%04x", c:byte())
  end)) .. '"'
end

-- names: optional map userdata -> name (sockets are written as their names)
function M.encode(v, names)
  local t = type(v)
  if v == nil then
    return "null"
  elseif t == "boolean" then
    return tostring(v)
  elseif t == "number" then
    if v == math.floor(v) and v > -2 ^ 53 and v < 2 ^ 53 then
      return string.format("%d", v)
    end
    return string.format("%.17g", v)
  elseif t == "string" then
    return encode_string(v)
  elseif t == "userdata" then
    return encode_string((names and names[v]) or tostring(v))
  elseif t == "table" then
    if v.on ~= nil then -- the "linger" option value
      return '{"on":' .. M.encode(v.on) .. ',"timeout":' .. M.encode(v.timeout) .. "}"
    end
    local parts = {}
    for i = 1, #v do parts[i] = M.encode(v[i], names) end
    return "[" .. table.concat(parts, ",") .. "]"
  end
  return encode_string(tostring(v))
end

-- all the values of a call, nils included, as a JSON array
function M.pack(names, ...)
  local n = select("#", ...)
  local parts = {}
  for i = 1, n do parts[i] = M.encode((select(i, ...)), names) end
  return "[" .. table.concat(parts, ",") .. "]"
end

function M.emit(line)
  io.stdout:write(line, "\n")
  io.stdout:flush()
end

function M.unhex(h)
  return (h:gsub("%x%x", function(x) return string.char(tonumber(x, 16)) end))
end

-- "*l", "*a" or a number
function M.pattern(p)
  return tonumber(p) or p
end

-- split an argument "op a b c" on spaces
function M.words(s)
  local w = {}
  for x in s:gmatch("%S+") do w[#w + 1] = x end
  return w
end

return M
