--! include holds

-- KEYS: product keys (at most 7,999); ARGV: prefix, claim ("id|gen"; "id" before gens)
-- Deletes the keys that still hold the claim, once it is dead (creation aborted or its lease
-- expired, experiment stopped or ended); returns -1 and deletes nothing while it is live.
if holds(ARGV[1], ARGV[2]) then return -1 end
local held = redis.call('MGET', unpack(KEYS))
local gone = {}
for i = 1, #KEYS do
  if held[i] == ARGV[2] then gone[#gone + 1] = KEYS[i] end
end
if #gone > 0 then redis.call('DEL', unpack(gone)) end
return #gone
