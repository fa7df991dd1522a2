-- Save a batch's trigger state only if nobody else wrote it since it was read (optimistic:
-- one round trip, no lock), and only while the experiment runs: a pause or stop moves its
-- 'status' in this same slot first, so no fire takes a sequence number after the stop's own
-- (its kill switch publishes with a later one).
-- KEYS: tracker state hash, triggers hash, experiment state, trigger version
-- ARGV: expected trigger version, n, (field, value) * n, m, gone field * m,
--       t, (product, period) * t
-- Returns {new trigger version, seq or -1}, or {-1, trigger version, 1 if the experiment
-- runs else 0} (nothing written) when the version moved or the experiment does not run.
local tv = tonumber(redis.call('GET', KEYS[4]) or '0')
local running = redis.call('HGET', KEYS[3], 'status') == 'running'
if tv ~= tonumber(ARGV[1]) or not running then return {-1, tv, running and 1 or 0} end
local i = 2
local n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]); i = i + 2 end
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do redis.call('HDEL', KEYS[1], ARGV[i]); i = i + 1 end
n = tonumber(ARGV[i]); i = i + 1
local seq = -1
if n > 0 then
  for _ = 1, n do redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]); i = i + 2 end
  seq = redis.call('HINCRBY', KEYS[3], 'seq_counter', 1)
end
return {redis.call('INCR', KEYS[4]), seq}
