-- mime.core for the bridge, in Lua: the eight filters of LuaSocket 3.1's C
-- module (b64, unb64, qp, unqp, wrp, qpwrp, eol, dot), with the same outputs
-- byte for byte, the same chunked (A, B) protocol that mime.lua and ltn12
-- drive, and the same number subtypes (the C module pushes its counters with
-- lua_pushnumber, so they come back as floats). Loaded through
-- package.preload["mime.core"]; Debian's pure-Lua mime.lua sits on top.
local byte, char, find, sub, format = string.byte, string.char, string.find, string.sub, string.format
local concat, min, tointeger, floor = table.concat, math.min, math.tointeger, math.floor
local core = { _VERSION = "MIME 1.0.3" }

local CRLF, EQCRLF = "\r\n", "=\r\n"

-- Argument checks, as luaL_optlstring / luaL_checknumber / luaL_checkinteger
-- word them; `level` is the caller of the filter, as counted from `error`.
local function argerror(n, name, expected, v, level)
  local got = v == nil and "no value" or type(v)
  error(format("bad argument #%d to '%s' (%s expected, got %s)", n, name, expected, got), level)
end

local function optstring(v, n, name)
  local t = type(v)
  if t == "string" or v == nil then return v end
  if t == "number" then return tostring(v) end
  argerror(n, name, "string", v, 4)
end

local function tonum(v, n, name, level)
  local x = tonumber(v)
  if x == nil or type(v) ~= "number" and type(v) ~= "string" then argerror(n, name, "number", v, level) end
  return x
end

-- (tail calls: tonum's caller's frame is the filter's)
local function checknumber(v, n, name)
  return tonum(v, n, name, 4)
end

local function optnumber(v, n, name, default)
  if v == nil then return default end
  return tonum(v, n, name, 4)
end

local function checkinteger(v, n, name)
  local i = tointeger(tonum(v, n, name, 5))
  if i == nil then error(format("bad argument #%d to '%s' (number has no integer representation)", n, name), 3) end
  return i
end

-- C's (int) cast: truncation toward zero.
local function int(x)
  if x >= 0 then return floor(x) end
  return -floor(-x)
end

-- Base64 ------------------------------------------------------------------

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local b64char, b64pair = {}, {}
for i = 0, 63 do b64char[i] = sub(B64, i + 1, i + 1) end
for i = 0, 4095 do b64pair[i] = b64char[i >> 6] .. b64char[i & 63] end
local b64value = {}
for i = 0, 63 do b64value[byte(B64, i + 1)] = i end
b64value[byte("=")] = 0
local EQ = byte("=")

-- The Base64 of s's first n bytes (n a multiple of 3).
local function b64groups(s, n, out)
  for i = 1, n, 3 do
    local a, b, c = byte(s, i, i + 2)
    local v = a << 16 | b << 8 | c
    out[#out + 1] = b64pair[v >> 12] .. b64pair[v & 4095]
  end
end

-- A, B = b64(C, D): A is the Base64 of the longest prefix of C .. D whose
-- length divides by 3, B the rest, unencoded; with D nil the rest is padded.
function core.b64(c, d)
  c = optstring(c, 1, "b64")
  if c == nil then return nil, nil end
  d = optstring(d, 2, "b64")
  local s = d == nil and c or c .. d
  local whole = #s - #s % 3
  local out = {}
  b64groups(s, whole, out)
  local rest = sub(s, whole + 1)
  if d ~= nil then return concat(out), rest end
  if #rest == 1 then
    local v = byte(rest) << 4
    out[#out + 1] = b64pair[v] .. "=="
  elseif #rest == 2 then
    local a, b = byte(rest, 1, 2)
    local v = (a << 8 | b) << 2
    out[#out + 1] = b64pair[v >> 6] .. b64char[v & 63] .. "="
  end
  local a = concat(out)
  if a == "" then return nil, nil end
  return a, nil
end

-- A, B = unb64(C, D): characters outside the alphabet (and '=') are skipped;
-- A decodes every complete group of four, B holds the incomplete one.
function core.unb64(c, d)
  c = optstring(c, 1, "unb64")
  if c == nil then return nil, nil end
  d = optstring(d, 2, "unb64")
  local s = d == nil and c or c .. d
  if find(s, "[^A-Za-z0-9+/=]") then s = s:gsub("[^A-Za-z0-9+/=]", "") end
  local whole = #s - #s % 4
  local out = {}
  for i = 1, whole, 4 do
    local p, q, r, t = byte(s, i, i + 3)
    local v = b64value[p] << 18 | b64value[q] << 12 | b64value[r] << 6 | b64value[t]
    local decoded = char(v >> 16, v >> 8 & 255, v & 255)
    if r == EQ then
      decoded = sub(decoded, 1, 1)
    elseif t == EQ then
      decoded = sub(decoded, 1, 2)
    end
    out[#out + 1] = decoded
  end
  local a = concat(out)
  if d ~= nil then return a, sub(s, whole + 1) end
  if a == "" then return nil, nil end
  return a, nil
end

-- Quoted-printable --------------------------------------------------------

local HEX = "0123456789ABCDEF"
local quoted = {}
for i = 0, 255 do quoted[i] = "=" .. sub(HEX, (i >> 4) + 1, (i >> 4) + 1) .. sub(HEX, (i & 15) + 1, (i & 15) + 1) end
local CR, LF, TAB, SPACE, DOT = 13, 10, 9, 32, 46

local PLAIN, QUOTED, IF_LAST, ISCR = 0, 1, 2, 3
local qpclass = {}
for i = 0, 255 do
  if (i >= 33 and i <= 60) or (i >= 62 and i <= 126) then
    qpclass[i] = PLAIN
  else
    qpclass[i] = QUOTED
  end
end
qpclass[TAB], qpclass[SPACE], qpclass[CR] = IF_LAST, IF_LAST, ISCR

-- The encoder's state: up to three bytes it cannot decide on yet (a CR that
-- may start a CRLF, a space or tab that may end a line).
local function qpencode(s, atom, marker, out)
  local i, n = 1, #s
  while i <= n do
    if #atom == 0 then
      -- a run of plain bytes needs no look-ahead
      local j = find(s, "[^!-<>-~]", i) or n + 1
      if j > i then
        out[#out + 1] = sub(s, i, j - 1)
        i = j
        if i > n then break end
      end
    end
    atom[#atom + 1] = byte(s, i)
    i = i + 1
    while #atom > 0 do
      local first = atom[1]
      local class = qpclass[first]
      if class == ISCR then
        if #atom < 2 then break end
        if atom[2] == LF then
          out[#out + 1] = marker
          atom[1], atom[2], atom[3] = nil, nil, nil
          break
        end
        out[#out + 1] = quoted[first]
      elseif class == IF_LAST then
        if #atom < 3 then break end
        if atom[2] == CR and atom[3] == LF then
          out[#out + 1] = quoted[first]
          out[#out + 1] = marker
          atom[1], atom[2], atom[3] = nil, nil, nil
          break
        end
        out[#out + 1] = char(first)
      elseif class == QUOTED then
        out[#out + 1] = quoted[first]
      else
        out[#out + 1] = char(first)
      end
      table.remove(atom, 1)
    end
  end
end

local function atomstring(atom)
  if #atom == 0 then return "" end
  return char(table.unpack(atom))
end

-- A, B = qp(C, D, marker): A encodes the longest prefix of C .. D that can be
-- encoded without knowing what follows, B is the rest, unencoded. CRLF in the
-- input becomes `marker` (CRLF by default); with D nil the rest is flushed
-- and a soft line break closes it.
function core.qp(c, d, marker)
  c = optstring(c, 1, "qp")
  marker = optstring(marker, 3, "qp") or CRLF
  if c == nil then return nil, nil end
  local atom, out = {}, {}
  qpencode(c, atom, marker, out)
  d = optstring(d, 2, "qp")
  if d == nil then
    if #atom > 0 then
      for k = 1, #atom do
        local b = atom[k]
        out[#out + 1] = qpclass[b] == PLAIN and char(b) or quoted[b]
      end
      out[#out + 1] = EQCRLF
    end
    local a = concat(out)
    if byte(a) == nil then return nil, nil end
    return a, nil
  end
  qpencode(d, atom, marker, out)
  return concat(out), atomstring(atom)
end

local hexvalue = {}
for i = 0, 9 do hexvalue[48 + i] = i end
for i = 0, 5 do hexvalue[65 + i] = 10 + i; hexvalue[97 + i] = 10 + i end

local function qpdecode(s, atom, out)
  local i, n = 1, #s
  while i <= n do
    if #atom == 0 then
      -- tabs and printable bytes but '=' stand for themselves
      local j = find(s, "[^\t -<>-~]", i) or n + 1
      if j > i then
        out[#out + 1] = sub(s, i, j - 1)
        i = j
        if i > n then break end
      end
    end
    atom[#atom + 1] = byte(s, i)
    i = i + 1
    local first = atom[1]
    if first == EQ then
      if #atom == 3 then
        if not (atom[2] == CR and atom[3] == LF) then -- a soft line break vanishes
          local hi, lo = hexvalue[atom[2]], hexvalue[atom[3]]
          if hi == nil or lo == nil then
            out[#out + 1] = char(atom[1], atom[2], atom[3])
          else
            out[#out + 1] = char(hi << 4 | lo)
          end
        end
        atom[1], atom[2], atom[3] = nil, nil, nil
      end
    elseif first == CR then
      if #atom == 2 then
        if atom[2] == LF then out[#out + 1] = CRLF end
        atom[1], atom[2] = nil, nil
      end
    else
      if first == TAB or (first > 31 and first < 127) then out[#out + 1] = char(first) end
      atom[1] = nil
    end
  end
end

-- A, B = unqp(C, D): the decoding of the longest prefix of C .. D that can be
-- decoded without knowing what follows, and the rest.
function core.unqp(c, d)
  c = optstring(c, 1, "unqp")
  if c == nil then return nil, nil end
  local atom, out = {}, {}
  qpdecode(c, atom, out)
  d = optstring(d, 2, "unqp")
  if d == nil then
    local a = concat(out)
    -- the C module tests the first byte as a C string: a result that
    -- starts with NUL comes back as nil too
    local first = byte(a)
    if first == nil or first == 0 then return nil, nil end
    return a, nil
  end
  qpdecode(d, atom, out)
  return concat(out), atomstring(atom)
end

-- Line wrapping -------------------------------------------------------------

-- A, n = wrp(left, B, length): B broken into lines of at most `length` bytes
-- (CRLF, bare CR dropped, LF becomes CRLF); `left` is what the current line
-- still has room for, n what it has after A.
function core.wrp(left, s, length)
  left = int(checknumber(left, 1, "wrp"))
  s = optstring(s, 2, "wrp")
  length = int(optnumber(length, 3, "wrp", 76))
  if s == nil then
    if left < length then return CRLF, length + 0.0 end
    return nil, length + 0.0
  end
  local out, i, n = {}, 1, #s
  while i <= n do
    local j = find(s, "[\r\n]", i)
    local stop = (j or n + 1) - 1
    while i <= stop do
      if left <= 0 then
        out[#out + 1] = CRLF
        left = length
      end
      local take = left > 0 and min(left, stop - i + 1) or 1
      out[#out + 1] = sub(s, i, i + take - 1)
      left = left - take
      i = i + take
    end
    if j == nil then break end
    if byte(s, j) == LF then
      out[#out + 1] = CRLF
      left = length
    end
    i = j + 1
  end
  return concat(out), left + 0.0
end

-- A, n = qpwrp(left, B, length): as wrp for quoted-printable text: soft line
-- breaks (=CRLF), never inside an =XX.
function core.qpwrp(left, s, length)
  left = int(checknumber(left, 1, "qpwrp"))
  s = optstring(s, 2, "qpwrp")
  length = int(optnumber(length, 3, "qpwrp", 76))
  if s == nil then
    if left < length then return EQCRLF, length + 0.0 end
    return nil, length + 0.0
  end
  local out = {}
  for i = 1, #s do
    local b = byte(s, i)
    if b == LF then
      left = length
      out[#out + 1] = CRLF
    elseif b ~= CR then
      if left <= (b == EQ and 3 or 1) then
        left = length
        out[#out + 1] = EQCRLF
      end
      out[#out + 1] = char(b)
      left = left - 1
    end
  end
  return concat(out), left + 0.0
end

-- End-of-line normalization --------------------------------------------------

-- A, n = eol(ctx, B, marker): every line break of B (CR, LF, CRLF or LFCR)
-- becomes `marker`; ctx carries a break candidate across chunks.
function core.eol(ctx, s, marker)
  ctx = checkinteger(ctx, 1, "eol")
  s = optstring(s, 2, "eol")
  marker = optstring(marker, 3, "eol") or CRLF
  if s == nil then return nil, 0.0 end
  local out, i, n = {}, 1, #s
  while i <= n do
    local j = find(s, "[\r\n]", i)
    if j == nil then
      out[#out + 1] = sub(s, i)
      ctx = 0
      break
    end
    if j > i then
      out[#out + 1] = sub(s, i, j - 1)
      ctx = 0
    end
    local b = byte(s, j)
    if ctx == CR or ctx == LF then
      if b == ctx then out[#out + 1] = marker end
      ctx = 0
    else
      out[#out + 1] = marker
      ctx = b
    end
    i = j + 1
  end
  return concat(out), ctx + 0.0
end

-- SMTP dot-stuffing --------------------------------------------------------

-- A, n = dot(state, B): B with a '.' doubled wherever it starts a line;
-- state 2 means "at the start of a line", 1 "after a CR".
function core.dot(state, s)
  state = checknumber(state, 1, "dot")
  s = optstring(s, 2, "dot")
  if s == nil then return nil, 2.0 end
  state = int(state)
  local out, i, n = {}, 1, #s
  while i <= n do
    local j = find(s, "[\r\n.]", i)
    if j == nil then
      out[#out + 1] = sub(s, i)
      state = 0
      break
    end
    if j > i then
      out[#out + 1] = sub(s, i, j - 1)
      state = 0
    end
    local b = byte(s, j)
    if b == CR then
      out[#out + 1] = "\r"
      state = 1
    elseif b == LF then
      out[#out + 1] = "\n"
      state = state == 1 and 2 or 0
    else
      out[#out + 1] = state == 2 and ".." or "."
      state = 0
    end
    i = j + 1
  end
  return concat(out), state + 0.0
end

return core
