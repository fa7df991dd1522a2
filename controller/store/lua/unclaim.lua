--! acl MGET claims
--! acl DEL claims
--! include holds

-- KEYS: the holders hash, then product keys (at most 7,999; catalog keys, one slot)
-- ARGV: lease key prefix, claim ("id|gen"; "id" before gens)
-- Deletes the keys that still hold the claim, once it is dead (creation aborted or its lease
-- expired, experiment stopped or ended); returns -1 and deletes nothing while it is live.
if holds(KEYS[1], ARGV[1], ARGV[2]) then return -1 end
local products = {}
for i = 2, #KEYS do products[i - 1] = KEYS[i] end
local held = redis.call('MGET', unpack(products))
local gone = {}
for i = 1, #products do
  if held[i] == ARGV[2] then gone[#gone + 1] = products[i] end
end
if #gone > 0 then redis.call('DEL', unpack(gone)) end
return #gone
