--! acl HGET state
--! acl HSET state
-- Close period k of an experiment for sales: from now on its sales are 'late' (ingest.lua).
-- Periods close in order; closing one that is closed already changes nothing.
-- KEYS: the experiment's state; ARGV: k. Returns the 'closed' mark (periods below it refuse
-- sales).
local st = KEYS[1]
local closed = tonumber(redis.call('HGET', st, 'closed') or '0')
local want = tonumber(ARGV[1]) + 1
if want > closed then
  redis.call('HSET', st, 'closed', want)
  closed = want
end
return closed
