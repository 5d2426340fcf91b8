-- mime.core's eight filters and mime.lua's ltn12 filters on top of them:
-- every output, chunk by chunk, with the number subtypes of the counters.
local util = require("util")
local core = require("mime.core")
local mime = require("mime")
local ltn12 = require("ltn12")
local show = util.show

show("_VERSION", core._VERSION)

-- A fixed pseudo-random byte source (no math.random: the same bytes on any Lua).
local state = 12345
local function bytes(n)
  local t = {}
  for i = 1, n do
    state = (state * 1103515245 + 12345) % 2147483648
    t[i] = string.char(state >> 16 & 255)
  end
  return table.concat(t)
end

local samples = {
  "", "a", "ab", "abc", "abcd", "hello world", "\0\1\2\255\254", "line\r\nnext\r\n",
  "trailing space \r\nand tab\t\r\n", "=41=4a=\r\nsoft", "=zz=4", "\r\r\n\n\r",
  "dot\r\n.start\r\n..two\r\n", ".\r\n", "bare\nlf\rcr", "x = 1 + 2", "\t \t ",
  string.rep("0123456789", 20), bytes(64), bytes(200),
}

for i, s in ipairs(samples) do
  show("b64 " .. i, core.b64(s))
  show("b64 split " .. i, core.b64(s:sub(1, #s // 2), s:sub(#s // 2 + 1)))
  local enc = core.b64(s) or ""
  show("unb64 " .. i, core.unb64(enc))
  show("unb64 split " .. i, core.unb64(enc:sub(1, 5), enc:sub(6)))
  show("unb64 raw " .. i, core.unb64(s))
  show("qp " .. i, core.qp(s))
  show("qp split " .. i, core.qp(s:sub(1, #s // 2), s:sub(#s // 2 + 1)))
  show("qp binary " .. i, core.qp(s, nil, "=0D=0A"))
  show("unqp " .. i, core.unqp(s))
  show("unqp split " .. i, core.unqp(s:sub(1, 3), s:sub(4)))
  show("unqp of qp " .. i, core.unqp(core.qp(s) or ""))
  show("wrp " .. i, core.wrp(5, s, 7))
  show("wrp default " .. i, core.wrp(76, s))
  show("qpwrp " .. i, core.qpwrp(6, core.qp(s) or "", 8))
  show("eol " .. i, core.eol(0, s))
  show("eol marker " .. i, core.eol(13, s, "<n>"))
  show("dot " .. i, core.dot(2, s))
  show("dot mid " .. i, core.dot(0, s))
end

-- The end-of-input calls of each filter.
show("b64 nil", core.b64(nil))
show("b64 no args", core.b64())
show("b64 empty end", core.b64("", nil))
show("b64 empty more", core.b64("", ""))
show("unb64 nil", core.unb64(nil))
show("unb64 padding only", core.unb64("===="))
show("unb64 odd padding", core.unb64("==AB"))
show("unb64 leftover", core.unb64("QUJD", "RA"))
show("unb64 leftover end", core.unb64("QUJDRA"))
show("unb64 junk", core.unb64("Q U\nJ*D!"))
show("qp nil", core.qp(nil))
show("qp space pending", core.qp("a ", ""))
show("qp space end", core.qp("a "))
show("qp cr pending", core.qp("a\r", ""))
show("qp cr end", core.qp("a\r"))
show("qp number", core.qp(12.5))
show("unqp nil", core.unqp(nil))
show("unqp pending", core.unqp("ab=4", ""))
show("unqp nul first", core.unqp("=00abc"))
show("unqp lower hex", core.unqp("=c3=a9"))
show("wrp end short", core.wrp(3, nil, 76))
show("wrp end full", core.wrp(76, nil, 76))
show("wrp end default", core.wrp(10))
show("wrp float left", core.wrp(2.9, "abcdef", 4))
show("wrp negative left", core.wrp(-3, "abcdef", 4))
show("wrp string numbers", core.wrp("2", "abcdef", "3"))
show("qpwrp end short", core.qpwrp(3, nil))
show("qpwrp end full", core.qpwrp(76, nil))
show("qpwrp equals at edge", core.qpwrp(4, "ab=41cd", 10))
show("eol end", core.eol(13, nil))
show("eol chunk boundary", core.eol(13, "\nx"))
show("eol chunk boundary same", core.eol(13, "\rx"))
show("eol float ctx", core.eol(10.0, "\n"))
show("dot end", core.dot(0, nil))
show("dot after cr", core.dot(1, "\n.x"))
show("dot float state", core.dot(2.0, ".x"))

-- Misuse: the argument errors (called by field name, not as a tail call, so
-- that the message names the function as the caller wrote it).
local function err(name, f)
  show(name, pcall(f))
end
err("b64 table", function() local r = core.b64({}); return r end)
err("b64 second table", function() local r = core.b64("a", {}); return r end)
err("qp marker table", function() local r = core.qp("a", nil, {}); return r end)
err("wrp no left", function() local r = core.wrp(); return r end)
err("wrp left table", function() local r = core.wrp({}, "a"); return r end)
err("wrp length bad", function() local r = core.wrp(1, "a", "x"); return r end)
err("eol no ctx", function() local r = core.eol(); return r end)
err("eol fractional ctx", function() local r = core.eol(1.5, "a"); return r end)
err("dot no state", function() local r = core.dot(); return r end)
err("unqp boolean", function() local r = core.unqp(true); return r end)

-- mime.lua's filters through ltn12, in chunks of every size.
local body = bytes(300) .. "\r\nplain text line\r\n.\r\n  \r\nend"
local function through(filter, text, chunk)
  local out = {}
  local source = ltn12.source.string(text)
  if chunk then
    local pos = 1
    source = function()
      if pos > #text then return nil end
      local piece = text:sub(pos, pos + chunk - 1)
      pos = pos + chunk
      return piece
    end
  end
  assert(ltn12.pump.all(ltn12.source.chain(source, filter), (ltn12.sink.table(out))))
  return table.concat(out)
end

for _, chunk in ipairs({ 1, 2, 3, 7, 64, false }) do
  local tag = " chunk " .. tostring(chunk)
  local b64 = through(ltn12.filter.chain(mime.encode("base64"), mime.wrap("base64")), body, chunk)
  show("base64 wrapped" .. tag, b64)
  show("base64 back" .. tag, through(mime.decode("base64"), b64, chunk) == body)
  local qp = through(ltn12.filter.chain(mime.normalize(), mime.encode("quoted-printable"), mime.wrap("quoted-printable")), body, chunk)
  show("qp wrapped" .. tag, qp)
  show("qp back" .. tag, through(mime.decode("quoted-printable"), qp, chunk))
  show("qp binary" .. tag, through(mime.encode("quoted-printable", "binary"), body, chunk))
  show("normalize" .. tag, through(mime.normalize(), "a\nb\rc\r\nd\n\re\n\nf", chunk))
  show("stuff" .. tag, through(mime.stuff(), ".lead\r\n.\r\nx.y\r\n..", chunk))
  show("wrap text" .. tag, through(mime.wrap("text", 10), string.rep("abcdefg ", 6) .. "\nshort\n", chunk))
end

-- mime.lua's own helpers over the core.
show("mime.b64", mime.b64("Aladdin:open sesame"))
show("mime.unb64", mime.unb64("QWxhZGRpbjpvcGVuIHNlc2FtZQ=="))
show("unknown key", pcall(mime.encode, "rot13"))

-- Random inputs (fixed seed) through every filter, first and later chunks:
-- one digest line per 250 cases, so a difference shows where it starts.
local fuzz = { "\r", "\n", " ", "\t", "=", ".", "A", "z", "0", "+", "/", "\0", "\255", "~", "=\r\n", "\r\n", "=4", "1" }
local function rnd(n)
  state = (state * 1103515245 + 12345) % 2147483648
  return (state >> 8) % n
end
local function gen()
  local t = {}
  for i = 1, rnd(30) do t[i] = fuzz[rnd(#fuzz) + 1] end
  return table.concat(t)
end
local function digest(h, ...)
  local t = table.pack(...)
  for i = 1, t.n do
    local v = t[i]
    local s = type(v) == "string" and v or tostring(v) .. (math.type(v) or "")
    for k = 1, #s do h = ((h ~ s:byte(k)) * 16777619) & 0xffffffff end
    h = ((h ~ 0x1f) * 16777619) & 0xffffffff
  end
  return h
end
local h = 2166136261
for i = 1, 2000 do
  local a, b = gen(), gen()
  if rnd(4) == 0 then b = nil end
  local l, len = rnd(12) - 2, rnd(10) + 1
  h = digest(h, core.b64(a, b))
  h = digest(h, core.unb64(a, b))
  h = digest(h, core.qp(a, b))
  h = digest(h, core.qp(a, b, "<M>"))
  h = digest(h, core.unqp(a, b))
  h = digest(h, core.wrp(l, b or a, len))
  h = digest(h, core.qpwrp(l, b or a, len))
  h = digest(h, core.eol(({ 0, 10, 13 })[rnd(3) + 1], b or a))
  h = digest(h, core.dot(rnd(3), b or a))
  if i % 250 == 0 then show("random cases to " .. i, string.format("%08x", h)) end
end
