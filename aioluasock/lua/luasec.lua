-- The bridge's `ssl` module: LuaSec 1.2's API (ssl.newcontext, ssl.wrap,
-- the connection and certificate objects) over the engine's TLS (the loop's
-- start_tls, see _luasec.py). Loaded once per Lua state by _runtime.py with
-- the bridge's internals (bridge.lua's `internal` table).
--
-- A wrapped connection is the engine's own client object under a userdata
-- of class "SSL:Connection": every TCP call works on the decrypted stream,
-- and `socket.select` takes it as it takes a TCP client.

local I = ...

local B, impl, request = I.B, I.impl, I.request
local argerror, typename, checkstring = I.argerror, I.typename, I.checkstring
local dgetmetatable = I.getmetatable
local type, pairs, ipairs, select, error, tostring, tonumber = type, pairs, ipairs, select, error, tostring, tonumber
local setmetatable, pack, unpack, sformat = setmetatable, table.pack, table.unpack, string.format
local mtype = math.type

local ssl = {
  _VERSION = "1.2.0",
  _COPYRIGHT = "LuaSec 1.2.0 - Copyright (C) 2006-2022 Bruno Silvestre, UFG (aioluasock bridge)",
}

-------------------------------------------------------------------------------
-- ssl.config
-------------------------------------------------------------------------------

local options = {}
for _, name in ipairs({ B.ssl_options() }) do options[name] = true end

ssl.config = {
  options = options,
  protocols = { tlsv1 = true, tlsv1_1 = true, tlsv1_2 = true, tlsv1_3 = true },
  algorithms = { ec = true },
  capabilities = { alpn = true, curves_list = false, ecdh_auto = true },
  curves = {},
  verify = { none = true, peer = true, client_once = true, fail_if_no_peer_cert = true },
}

-------------------------------------------------------------------------------
-- Contexts
-------------------------------------------------------------------------------

local context_mt = { __name = "SSL:Context", __index = {} }
local contexts = setmetatable({}, { __mode = "k" })  -- userdata -> { mode = ... }

context_mt.__tostring = function(ud) return sformat("SSL context: %p", ud) end
context_mt.__gc = function(ud) I.release(ud) end
context_mt.__close = context_mt.__gc

local function is_context(v)
  return type(v) == "userdata" and dgetmetatable(v) == context_mt and impl[v] ~= nil
end

-- LuaSec's optexec: a string, or a table of strings, as the arguments of a
-- call; each must be a string (or a number, which Lua turns into one).
local function words(level, what, value)
  if value == nil then return nil end
  local list = type(value) == "table" and value or { value }
  local out = {}
  for i, w in ipairs(list) do
    if type(w) ~= "string" and type(w) ~= "number" then
      error(sformat("bad argument #%d to '%s' (string expected, got %s)", i + 1, what, typename(w, true)), level + 1)
    end
    out[i] = tostring(w)
  end
  return out
end

local function alpn_list(cfg)
  local alpn = cfg.alpn
  if alpn == nil then return true, nil end
  local list
  if cfg.mode == "client" and type(alpn) == "string" then
    list = { alpn }
  elseif type(alpn) == "table" then
    list = alpn
  elseif cfg.mode == "server" and type(alpn) == "function" then
    -- Python's ssl picks the protocol from a list: no callback.
    return nil, "ALPN selection functions are not supported (give a list)"
  else
    return nil, "invalid ALPN parameter"
  end
  if cfg.mode ~= "client" and cfg.mode ~= "server" then return true, nil end
  local out = {}
  for _, v in ipairs(list) do
    if type(v) ~= "string" then return true, nil end  -- LuaSec stops there too
    if #v == 0 then return nil, "invalid ALPN name (empty string)" end
    if #v > 255 then return nil, "invalid ALPN name (length > 255)" end
    out[#out + 1] = v
  end
  if #out == 0 then return nil, "invalid ALPN list (empty)" end
  return true, out
end

local function newcontext(cfg)
  local protocol = cfg.protocol
  if type(protocol) ~= "string" and type(protocol) ~= "number" then
    error(sformat("bad argument #1 to 'create' (string expected, got %s)", typename(protocol, true)), 2)
  end
  local params = { protocol = tostring(protocol) }
  local mode = cfg.mode
  if type(mode) == "string" then params.mode = mode end
  local certificates = cfg.certificates
  if certificates == nil then
    certificates = { { certificate = cfg.certificate, key = cfg.key, password = cfg.password } }
  end
  for _, c in ipairs(certificates) do
    local password = c.password
    if c.key then
      if password ~= nil and type(password) ~= "function" and type(password) ~= "string" then
        return nil, "invalid password type"
      end
      if type(password) == "function" then
        -- LuaSec calls it when OpenSSL needs the passphrase; asking once
        -- here is the same unless it has side effects.
        password = password()
        if type(password) ~= "string" then password = "" end
      end
      params.key = checkstring(2, 2, c.key, true)
      params.password = password
    end
    if c.certificate then params.certificate = checkstring(2, 2, c.certificate, true) end
  end
  if cfg.cafile ~= nil then params.cafile = checkstring(2, 2, cfg.cafile, true) end
  if cfg.capath ~= nil then params.capath = checkstring(2, 3, cfg.capath, true) end
  if cfg.ciphers ~= nil then params.ciphers = checkstring(2, 2, cfg.ciphers, true) end
  if cfg.ciphersuites ~= nil then checkstring(2, 2, cfg.ciphersuites, true) end
  params.verify = words(2, "setverify", cfg.verify)
  params.options = words(2, "setoptions", cfg.options)
  if cfg.depth ~= nil then
    local d = cfg.depth
    if mtype(tonumber(d)) ~= "integer" and not (type(d) == "number" or type(d) == "string") then
      error(sformat("bad argument #2 to 'setdepth' (number expected, got %s)", typename(d, true)), 2)
    end
    if tonumber(d) == nil then
      error(sformat("bad argument #2 to 'setdepth' (number expected, got %s)", typename(d, true)), 2)
    end
  end
  if cfg.dhparam ~= nil and type(cfg.dhparam) ~= "function" then return nil, "invalid DH parameter type" end
  if cfg.curve ~= nil then params.curve = checkstring(2, 2, cfg.curve, true) end
  local ok, alpn = alpn_list(cfg)
  if not ok then return nil, alpn end
  params.alpn = alpn
  local made, err = B.ssl_newcontext(params)
  if made == nil then return nil, err end
  local ud = I.new_userdata(made, context_mt)
  contexts[ud] = { mode = params.mode }
  return ud
end

ssl.newcontext = newcontext

-------------------------------------------------------------------------------
-- Certificates (SSL:Certificate)
-------------------------------------------------------------------------------

local cert_mt = { __name = "SSL:Certificate" }
local cert_methods = {}
cert_mt.__index = cert_methods
cert_mt.__tostring = function(ud) return sformat("X509 certificate: %p", ud) end
cert_mt.__gc = function(ud) I.release(ud) end
cert_mt.__close = cert_mt.__gc

local function checkcert(level, self)
  if type(self) == "userdata" and dgetmetatable(self) == cert_mt and impl[self] ~= nil then
    return impl[self]
  end
  argerror(level + 1, 1, "SSL:Certificate expected, got " .. typename(self, true))
end

local function new_cert(c)
  if c == nil then return nil end
  return I.new_userdata(c, cert_mt)
end

local function name_table(...)
  local r = pack(...)
  local t = {}
  for i = 1, r.n, 3 do
    t[#t + 1] = { oid = r[i], name = r[i + 1], value = r[i + 2] }
  end
  return t
end

function cert_methods.subject(self)
  return name_table(B.x509(checkcert(2, self), "subject"))
end

function cert_methods.issuer(self)
  return name_table(B.x509(checkcert(2, self), "issuer"))
end

function cert_methods.extensions(self)
  local r = pack(B.x509(checkcert(2, self), "extensions"))
  local t = {}
  local i = 1
  while i <= r.n do
    local oid, name, count = r[i], r[i + 1], r[i + 2]
    local ext = t[oid] or { name = name }
    t[oid] = ext
    i = i + 3
    for _ = 1, count do
      local kind, value = r[i], r[i + 1]
      local list = ext[kind]
      if list == nil then
        list = {}
        ext[kind] = list
      end
      list[#list + 1] = value
      i = i + 2
    end
  end
  return t
end

function cert_methods.digest(self, ...)
  local c = checkcert(2, self)
  local alg = (...)
  if alg ~= nil then alg = checkstring(2, 2, alg, true) end
  return B.x509(c, "digest", alg)
end

function cert_methods.pem(self) return B.x509(checkcert(2, self), "pem") end
function cert_methods.notbefore(self) return B.x509(checkcert(2, self), "notbefore") end
function cert_methods.notafter(self) return B.x509(checkcert(2, self), "notafter") end
function cert_methods.serial(self) return B.x509(checkcert(2, self), "serial") end
function cert_methods.getsignaturename(self) return B.x509(checkcert(2, self), "signature") end

function cert_methods.pubkey(self)
  local pem, kind, bits = B.x509(checkcert(2, self), "pubkey")
  return pem, kind, bits
end

function cert_methods.validat(self, ...)
  local c = checkcert(2, self)
  local t = I.checknumber(2, 2, (...), select("#", ...) > 0)
  if mtype(t) ~= "integer" then
    local i = math.tointeger(t)
    if i == nil then argerror(2, 2, "number has no integer representation") end
    t = i
  end
  return B.x509(c, "validat", t)
end

function cert_methods.setencode(self, ...)
  local c = checkcert(2, self)
  local enc = checkstring(2, 2, (...), select("#", ...) > 0)
  if enc:sub(1, 3) == "ai5" then B.x509(c, "setencode", false) return true end
  if enc:sub(1, 4) == "utf8" then B.x509(c, "setencode", true) return true end
  return false
end

ssl.loadcertificate = function(...)
  local data = checkstring(2, 1, (...), select("#", ...) > 0)
  return new_cert(B.ssl_loadcert(data))
end

-------------------------------------------------------------------------------
-- Connections (SSL:Connection)
-------------------------------------------------------------------------------

local conn_mt = {
  __name = "SSL:Connection",
  -- The TCP methods shared with LuaSec's object check for these groups.
  ["tcp{any}"] = true,
  ["tcp{client}"] = true,
}
local conn_methods = {}
conn_mt.__index = conn_methods
local conns = setmetatable({}, { __mode = "k" })  -- userdata -> state

local function checkconn(level, self)
  local st = type(self) == "userdata" and dgetmetatable(self) == conn_mt and conns[self]
  if st then return impl[self], st end
  argerror(level + 1, 1, "SSL:Connection expected, got " .. typename(self, true))
end

local function connected(self)
  local st = conns[self]
  return st ~= nil and st.state == "connected"
end

local function close(self)
  local o, st = checkconn(2, self)
  if st.state ~= "closed" then
    st.state = "closed"
    B.close(o)
  end
end

conn_mt.__tostring = function(ud)
  local st = conns[ud]
  return sformat("SSL connection: %p%s", ud, st and st.state == "closed" and " (closed)" or "")
end
conn_mt.__gc = I.gc_obj
conn_mt.__close = function(ud) if conns[ud] then close(ud) end end

conn_methods.close = function(self) close(self) end
conn_methods.receive = I.make_receive("SSL:Connection", "wantread", connected, true)
conn_methods.send = I.make_send("SSL:Connection", "wantwrite", connected)
conn_methods.settimeout = I.settimeout("SSL:Connection")
conn_methods.gettimeout = I.gettimeout("SSL:Connection")
conn_methods.getfd = I.methods.getfd
conn_methods.getstats = I.methods.getstats
conn_methods.setstats = I.methods.setstats
-- Not in LuaSec's object (whose descriptor is its own business), but asked
-- of a connection so often that the bridge keeps them.
conn_methods.getpeername = I.methods.getpeername
conn_methods.getsockname = I.methods.getsockname

function conn_methods.dirty(self)
  local o, st = checkconn(2, self)
  if st.state == "closed" then return false end
  return B.dirty(o)
end

function conn_methods.dohandshake(self)
  local o, st = checkconn(2, self)
  if st.state == "closed" then return false, "closed" end
  if st.state == "connected" then return true end
  local ok, err = request(B.ssl_handshake, o, impl[st.ctx], st.sni, st.sni_map, st.sni_strict)
  if ok then
    st.state = "connected"
    return true
  end
  if err ~= "wantread" and err ~= "wantwrite" then
    -- The connection is gone (the engine closed it).
    st.state = "failed"
  end
  return false, err
end

function conn_methods.sni(self, ...)
  local _, st = checkconn(2, self)
  local mode = contexts[st.ctx].mode
  if mode == "client" then
    st.sni = checkstring(2, 2, (...), select("#", ...) > 0)
  elseif mode == "server" then
    local map, strict = ...
    if type(map) ~= "table" then
      argerror(2, 2, "table expected, got " .. typename(map, select("#", ...) > 0))
    end
    for name, ctx in pairs(map) do
      checkstring(2, 2, name, true)
      if not is_context(ctx) then argerror(2, -1, "SSL:Context expected, got " .. typename(ctx, true)) end
    end
    local copy = {}
    for name, ctx in pairs(map) do copy[tostring(name)] = impl[ctx] end
    st.sni_map = copy
    st.sni_strict = strict and true or false
  end
end

function conn_methods.getsniname(self)
  local o, st = checkconn(2, self)
  return B.ssl_sniname(o, contexts[st.ctx].mode == "server")
end

function conn_methods.getpeercertificate(self, ...)
  local o, st = checkconn(2, self)
  if st.state ~= "connected" then return nil, "closed" end
  local n = (...)
  if n ~= nil then n = math.tointeger(I.checknumber(2, 2, n, true)) or 1 end
  n = n or 1
  if n < 1 then return nil, "invalid certificate index" end
  if n > 1 then return nil end  -- the chain beyond the peer's own is not kept
  return new_cert(B.ssl_peercert(o))
end

function conn_methods.getpeerchain(self)
  local o, st = checkconn(2, self)
  if st.state ~= "connected" then return nil, "closed" end
  local c = B.ssl_peercert(o)
  return { new_cert(c) }
end

function conn_methods.getpeerverification(self)
  local o, st = checkconn(2, self)
  if st.state ~= "connected" then return false, "closed" end
  return B.ssl_verified(o, impl[st.ctx])
end

function conn_methods.getalpn(self)
  local o = checkconn(2, self)
  return B.ssl_alpn(o)
end

function conn_methods.want(self)
  local _, st = checkconn(2, self)
  if st.state == "new" or st.state == "handshaking" then return "read" end
  return "nothing"
end

function conn_methods.info(self, field)
  local o, st = checkconn(2, self)
  if st.state ~= "connected" then return nil, "closed" end
  if field == "compression" then return nil end
  local desc, bits, algbits, protocol = B.ssl_info(o)
  local t = {}
  if desc then
    t.bits, t.algbits = bits + 0.0, algbits + 0.0
    t.cipher, t.protocol, t.key, t.authentication, t.encryption, t.mac =
      string.match(desc, "^(%S+)%s+(%S+)%s+Kx=(%S+)%s+Au=(%S+)%s+Enc=(%S+)%s+Mac=(%S+)")
    t.export = string.match(desc, "%sexport%s*$") ~= nil
    t.protocol = protocol
  end
  if field then return t[field] end
  return next(t) and t or nil
end

local function wrap(sock, cfg)
  local ctx, msg
  if type(cfg) == "table" then
    ctx, msg = newcontext(cfg)
    if not ctx then return nil, msg end
  else
    ctx = cfg
  end
  if not is_context(ctx) then error("bad argument #1 to 'create' (invalid context)", 2) end
  if contexts[ctx].mode ~= "client" and contexts[ctx].mode ~= "server" then return nil, "invalid mode" end
  local o = I.checkobj(2, sock, "tcp{client}")
  local dead = B.ssl_wrap(o)
  -- The TCP object is left without a descriptor, as LuaSec leaves it.
  impl[sock] = dead
  local ud = I.new_userdata(o, conn_mt)
  conns[ud] = { state = "new", ctx = ctx }
  return ud
end

ssl.wrap = wrap

return ssl
