-- Save a batch's trigger state only if nobody else wrote it since it was read (optimistic:
-- one round trip, no lock): the tracker's version and the experiments version must both be
-- the ones the batch was computed from.
-- KEYS: state hash, triggers hash, experiment state, trigger version, experiments version
-- ARGV: expected trigger version, expected experiments version,
--       n, (field, value) * n, m, gone field * m, t, (product, period) * t
-- Returns {new trigger version, seq or -1}, or {-1, trigger version, experiments version}
-- (nothing written) when either version moved.
local tv = tonumber(redis.call('GET', KEYS[4]) or '0')
local ev = tonumber(redis.call('GET', KEYS[5]) or '0')
if tv ~= tonumber(ARGV[1]) or ev ~= tonumber(ARGV[2]) then return {-1, tv, ev} end
local i = 3
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
