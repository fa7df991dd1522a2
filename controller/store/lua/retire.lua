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
-- Refused too while the holders hash says it is not final: its claims would count as live for
-- good (lua/holds.lua), since no reconcile sees a retired experiment again.
local held = redis.call('HGET', KEYS[2], ARGV[1])
if held then
  local st, _, r = string.match(held, '^([^|]*)|([^|]*)|?(.*)$')
  if (st ~= 'stopped' and st ~= 'ended') or r == 'releasing' then return -1 end
end
if redis.call('SADD', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('INCR', KEYS[3])
return 1
