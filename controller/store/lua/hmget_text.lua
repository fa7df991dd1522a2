--! acl HMGET records
--! acl HLEN records
-- Some fields of a hash, in the order given, as one string "value\n..." ("" for a field with
-- no value): the client parses one reply, not one per field (a chunk of products' records,
-- chunks.py). A caller that finds more lines than fields (a value held a newline) asks again
-- for an array (false for no value). With them, the hash's length: the caller compares it
-- with the records found.
-- KEYS: the hash; ARGV: "text" or "array", then "\n" and the fields joined by newlines (no
-- field holds one, none is empty) or "" and the fields one by one.
-- Returns {HLEN, text or array}.
local fields, n = {}, 0
if ARGV[2] == '\n' then
  for f in string.gmatch(ARGV[3], '[^\n]+') do n = n + 1; fields[n] = f end
else
  for i = 3, #ARGV do n = n + 1; fields[n] = ARGV[i] end
end
local text = ARGV[1] == 'text'
local parts = {}
-- HMGET in steps: Lua's stack holds some 8,000 arguments
for i = 1, n, 4000 do
  local j = math.min(i + 3999, n)
  local got = redis.call('HMGET', KEYS[1], unpack(fields, i, j))
  if text then
    for x = 1, j - i + 1 do
      if not got[x] then got[x] = '' end
    end
    parts[#parts + 1] = table.concat(got, '\n', 1, j - i + 1)
  else
    for x = 1, j - i + 1 do parts[i + x - 1] = got[x] end
  end
end
local held = redis.call('HLEN', KEYS[1])
if text then return {held, table.concat(parts, '\n')} end
return {held, parts}
