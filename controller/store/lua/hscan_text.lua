--! acl HSCAN records
-- One HSCAN step of a hash, as one string "field\nvalue\n...": the client parses one reply,
-- not two per field. Should a field or value hold a newline (product ids may), the step's
-- array is returned as it is.
-- KEYS: the hash; ARGV: cursor, count. Returns {next cursor, text or array}.
local r = redis.call('HSCAN', KEYS[1], ARGV[1], 'COUNT', ARGV[2])
local items = r[2]
for i = 1, #items do
  if string.find(items[i], '\n', 1, true) then return {r[1], items} end
end
return {r[1], table.concat(items, '\n')}
