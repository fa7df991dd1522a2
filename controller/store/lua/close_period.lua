-- Close period k of an experiment for sales: from now on its sales are 'late' (ingest.lua).
-- Periods close in order; closing one that is closed already changes nothing.
-- ARGV: prefix, id, k. Returns the 'closed' mark (periods below it refuse sales).
local st = ARGV[1]..':exp:'..ARGV[2]..':state'
local closed = tonumber(redis.call('HGET', st, 'closed') or '0')
local want = tonumber(ARGV[3]) + 1
if want > closed then
  redis.call('HSET', st, 'closed', want)
  closed = want
end
return closed
