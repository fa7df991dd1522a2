--! acl GET turn
--! acl DEL turn
-- Give an experiment's turn back, only if it is still the owner's.
-- KEYS: the turn; ARGV: owner. Returns 1 if given back.
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
