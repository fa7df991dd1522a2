--! acl SISMEMBER index
--! acl SET creating
--! acl INCR fence
-- Begin creating an experiment (catalog keys).
-- KEYS: experiments index, the creation's lease, the fence counter; ARGV: id, gen, lease_ms
-- Returns 'exists', 'busy' (another creation holds the lease) or this creation's fence: a
-- number larger than every earlier creation's, which orders their writes to the
-- experiment's own slot (create_init.lua).
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then return 'exists' end
if not redis.call('SET', KEYS[2], ARGV[2], 'NX', 'PX', ARGV[3]) then return 'busy' end
return tostring(redis.call('INCR', KEYS[3]))
