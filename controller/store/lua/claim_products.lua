--! acl GET creating
--! acl PEXPIRE creating
--! acl MGET claims
--! acl DEL creating
--! acl MSET claims
--! include holds

-- KEYS: the creation's lease, the holders hash, then product keys (at most 3,999: MSET gets
-- them through unpack, limited to 8,000 values); all catalog keys, one slot
-- ARGV: lease key prefix, id, gen, lease_ms
-- All of the chunk or none of it: {'ok'}, {'lost'} (the creation's lease expired, or it was
-- refused), or {'conflict', i, experiment, 'running'|'creating'} for the first product (the
-- chunk's i-th) held live, which also ends the creation.
local marker, holders = KEYS[1], KEYS[2]
local creating, id, gen = ARGV[1], ARGV[2], ARGV[3]
if redis.call('GET', marker) ~= gen then return {'lost'} end
redis.call('PEXPIRE', marker, ARGV[4])
local mine = id..'|'..gen
local products = {}
for i = 3, #KEYS do products[i - 2] = KEYS[i] end
local held = redis.call('MGET', unpack(products))
local live = {}
for i = 1, #products do
  local h = held[i]
  if h and h ~= mine then
    local l = live[h]
    if l == nil then
      local x, kind = holds(holders, creating, h)
      l = x and {x, kind} or false
      live[h] = l
    end
    if l then
      redis.call('DEL', marker)  -- refused: every claim of this creation dies with it, and a
      return {'conflict', i, l[1], l[2]}  -- chunk already sent after this one finds 'lost'
    end
  end
end
local kv = {}
for i = 1, #products do kv[2 * i - 1] = products[i]; kv[2 * i] = mine end
redis.call('MSET', unpack(kv))
return {'ok'}
