-- Complete a flip only once: the state's flipped_period moves forward, never back.
-- ARGV: prefix, id, k, seq, missed
local st = ARGV[1]..':exp:'..ARGV[2]..':state'
local cur = tonumber(redis.call('HGET', st, 'flipped_period') or '-1')
if tonumber(ARGV[3]) > cur then
  redis.call('HSET', st, 'flipped_period', ARGV[3], 'seq', ARGV[4])
  redis.call('HINCRBY', st, 'missed_flips', ARGV[5])
  redis.call('HINCRBY', st, 'flips', 1)
  return 1
end
return 0
