--! acl GET creating
--! acl DEL creating
--! acl HGET holders
-- Drop the creation's lease if it is still this attempt's (catalog keys). Returns
-- 'committed' if this attempt committed the experiment after all (its reply lost; its status
-- may have moved on since), else 'aborted'.
-- KEYS: the creation's lease, holders hash; ARGV: id, gen
if redis.call('GET', KEYS[1]) == ARGV[2] then redis.call('DEL', KEYS[1]) end
local m = redis.call('HGET', KEYS[2], ARGV[1])
-- the holder reads "status|gen", or "status|gen|releasing" (holds.lua)
if m and string.match(m, '^[^|]*|([^|]*)') == ARGV[2] then return 'committed' end
return 'aborted'
