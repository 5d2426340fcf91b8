-- LuaSocket's socket.smtp (Debian's pure-Lua file, unmodified) with a
-- multipart message built by smtp.message, mime and ltn12: a quoted-printable
-- text part, a base64 attachment, lines that need dot-stuffing. Sends it to
-- the SMTP responder at 127.0.0.1:PORT, then one the responder refuses.
--   lua5.4 smtp_client.lua PORT
local smtp = require("socket.smtp")
local mime = require("mime")
local ltn12 = require("ltn12")
local port = tonumber(arg[1])

local binary = {}
for i = 0, 4095 do binary[#binary + 1] = string.char((i * 7 + i // 256) % 256) end
binary = table.concat(binary)

local text = "Caf\195\169 au lait = 3\226\130\172\r\n.a line that starts with a dot\r\n" ..
  ".\r\n" .. string.rep("long line ", 20) .. "\r\ntrailing space \r\nend"

local message = smtp.message({
  headers = {
    from = "Sender <sender@example.test>",
    to = "Receiver <receiver@example.test>",
    subject = "corpus message",
  },
  body = {
    preamble = "This is a multipart message.",
    [1] = {
      headers = {
        ["content-type"] = 'text/plain; charset="utf-8"',
        ["content-transfer-encoding"] = "quoted-printable",
      },
      body = ltn12.source.chain(
        ltn12.source.string(text),
        ltn12.filter.chain(mime.normalize(), mime.encode("quoted-printable"), mime.wrap("quoted-printable"))
      ),
    },
    [2] = {
      headers = {
        ["content-type"] = 'application/octet-stream; name="data.bin"',
        ["content-disposition"] = 'attachment; filename="data.bin"',
        ["content-transfer-encoding"] = "BASE64",
      },
      body = ltn12.source.chain(
        ltn12.source.string(binary),
        ltn12.filter.chain(mime.encode("base64"), mime.wrap())
      ),
    },
    epilogue = "\r\n.\r\nthe end",
  },
})

print("sent", smtp.send({
  from = "<sender@example.test>",
  rcpt = { "<receiver@example.test>", "<second@example.test>" },
  source = message,
  server = "127.0.0.1",
  port = port,
}))
print("refused", smtp.send({
  from = "<sender@example.test>",
  rcpt = "<nobody@example.test>",
  source = ltn12.source.string("Subject: x\r\n\r\nbody\r\n"),
  server = "127.0.0.1",
  port = port,
}))
