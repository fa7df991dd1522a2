--! acl HGET state
--! acl SET columns
--! acl DEL sums records
--! acl HDEL records_version
--! acl HSET state
-- Store the compacted form of closed period k and drop its live state, once: only while k is
-- the next period to compact (two workers compacting the same period store it once; both
-- built it from the same closed state). The dedupe markers of k go with their TTL.
-- KEYS: the experiment's state, col:{k}, sums:{k}, a:{k}, av (the records' write counters);
-- ARGV: k, blob. Returns 1 if stored, 0 if already done.
local st = KEYS[1]
local k = tonumber(ARGV[1])
if tonumber(redis.call('HGET', st, 'closed') or '0') <= k then
  return redis.error_reply('period '..k..' is not closed')
end
if tonumber(redis.call('HGET', st, 'compacted') or '0') ~= k then return 0 end
redis.call('SET', KEYS[2], ARGV[2])
redis.call('DEL', KEYS[3], KEYS[4])
redis.call('HDEL', KEYS[5], 'w:'..k, 'd:'..k)
redis.call('HSET', st, 'compacted', k + 1)
return 1
