--! acl HGET state
--! acl DEL spec state
-- Drop what an aborted creation wrote in the experiment's slot (create_init.lua), unless a
-- later creation has written it since. KEYS: spec, state; ARGV: fence
if redis.call('HGET', KEYS[2], 'fence') == ARGV[1] then redis.call('DEL', KEYS[1], KEYS[2]) end
return 1
