--! acl GET turn
--! acl SET turn
-- Take (or renew) an experiment's turn: one holder at a time changes what is in force for
-- its products (controller/flipper.py), so that its decisions reach the assignments topic in
-- the order of their sequence numbers. A dead holder's turn expires with its lease.
-- KEYS: the turn; ARGV: owner, lease_ms. Returns 1 (held by the owner now) or 0 (busy).
local held = redis.call('GET', KEYS[1])
if held and held ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
