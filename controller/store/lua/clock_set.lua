--! acl GET clock
--! acl SET clock
-- Move the simulated clock KEYS[1] to ARGV[1] (ms) unless it is already later:
-- max(old, new) atomically, so a late writer cannot move time back.
local c = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > c then redis.call('SET', KEYS[1], ARGV[1]) end
return 1
