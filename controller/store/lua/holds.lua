-- Included by the scripts that read product claims (see controller/store/experiments.py).
local function holds(p, h)
  -- the experiment behind claim h and 'running' or 'creating' if the claim is live, else false
  local x, g = string.match(h, '^([^|]*)|?(.*)$')
  if g ~= '' and redis.call('GET', p..':exp:'..x..':creating') == g then return x, 'creating' end
  local st = redis.call('HMGET', p..':exp:'..x..':state', 'status', 'claim')
  if st[1] and st[1] ~= 'stopped' and st[1] ~= 'ended' and (st[2] or '') == g then
    return x, 'running'
  end
  return false
end
