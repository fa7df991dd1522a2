--! acl GET creating
--! acl HGET holders
-- Included by the scripts that read product claims (see controller/store/experiments.py).
-- Catalog keys only (one slot): 'holders' is the hash id -> "status|gen" of every created
-- experiment, 'creating' the key prefix of creation leases.
local function holds(holders, creating, h)
  -- the experiment behind claim h and 'running' or 'creating' if the claim is live, else false
  local x, g = string.match(h, '^([^|]*)|?(.*)$')
  if g ~= '' and redis.call('GET', creating..x) == g then return x, 'creating' end
  local m = redis.call('HGET', holders, x)
  if m then
    local st, mg = string.match(m, '^([^|]*)|(.*)$')
    if st ~= 'stopped' and st ~= 'ended' and mg == g then return x, 'running' end
  end
  return false
end
