--! acl GET creating
--! acl HGET holders
-- Included by the scripts that read product claims (see controller/store/experiments.py).
-- Catalog keys only (one slot): 'holders' is the hash id -> "status|gen" of every created
-- experiment ("status|gen|releasing" for a stopped or ended one whose last messages are not
-- all out yet), 'creating' the key prefix of creation leases.
local function holds(holders, creating, h)
  -- the experiment behind claim h and 'running', 'creating' or 'releasing' if the claim is
  -- live, else false. A stopped or ended experiment's claims stay live ('releasing') until
  -- its last messages are out: a new holder's messages must come after them on the topic
  local x, g = string.match(h, '^([^|]*)|?(.*)$')
  if g ~= '' and redis.call('GET', creating..x) == g then return x, 'creating' end
  local m = redis.call('HGET', holders, x)
  if m then
    local st, mg, r = string.match(m, '^([^|]*)|([^|]*)|?(.*)$')
    if mg == g then
      if st ~= 'stopped' and st ~= 'ended' then return x, 'running' end
      if r == 'releasing' then return x, 'releasing' end
    end
  end
  return false
end
