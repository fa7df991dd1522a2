--! acl HGET holders
--! acl SADD retired
--! acl INCR version
-- Record an experiment as retired (controller/retirement.py), once: its products are in the
-- retired products set already (ExperimentStore.retire adds them first). Refused while the
-- holders hash still says its last messages are not all out (its claims count until they
-- are: lua/holds.lua; the flip tick's reconcile, which sees only the experiments not
-- retired, repairs that first). The version moves only for the call that added it, so that
-- the routing caches drop it. KEYS: retired set, holders hash, version; ARGV: id.
-- Returns 1 if retired now, 0 if it was already, -1 if refused.
local held = redis.call('HGET', KEYS[2], ARGV[1])
if held and string.find(held, '|releasing', 1, true) then return -1 end
if redis.call('SADD', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('INCR', KEYS[3])
return 1
