-- Store the compacted form of closed period k and drop its live hashes, once: only while k is
-- the next period to compact (two workers compacting the same period store it once; both
-- built it from the same closed state). The dedupe markers of k go with their TTL.
-- ARGV: prefix, id, k, blob. Returns 1 if stored, 0 if already done.
local base = ARGV[1]..':exp:'..ARGV[2]
local st = base..':state'
local k = tonumber(ARGV[3])
if tonumber(redis.call('HGET', st, 'closed') or '0') <= k then
  return redis.error_reply('period '..k..' is not closed')
end
if tonumber(redis.call('HGET', st, 'compacted') or '0') ~= k then return 0 end
redis.call('SET', base..':col:'..k, ARGV[4])
redis.call('DEL', base..':cells:'..k, base..':a:'..k)
redis.call('HSET', st, 'compacted', k + 1)
return 1
