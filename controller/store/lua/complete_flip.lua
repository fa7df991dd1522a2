-- Complete a flip only once: the state's flipped_period moves forward, never back.
-- KEYS: the experiment's state; ARGV: k, seq, missed
local st = KEYS[1]
local cur = tonumber(redis.call('HGET', st, 'flipped_period') or '-1')
if tonumber(ARGV[1]) > cur then
  redis.call('HSET', st, 'flipped_period', ARGV[1], 'seq', ARGV[2])
  redis.call('HINCRBY', st, 'missed_flips', ARGV[3])
  redis.call('HINCRBY', st, 'flips', 1)
  return 1
end
return 0
