--! acl GET trigger_version turn
--! acl HMGET state
--! acl HSET trigger_state triggers
--! acl HDEL trigger_state
--! acl HINCRBY state
--! acl SET turn
--! acl INCR trigger_version
--! acl EXISTS trigger_waits
--! acl SADD trigger_waits
--! acl PEXPIRE trigger_waits
--! acl SREM trigger_waits
-- Save a batch's trigger state only if nobody else wrote it since it was read (optimistic:
-- one round trip, no lock), and only while the experiment runs: a pause or stop moves its
-- 'status' in this same slot first, so no fire takes a sequence number after the stop's own.
-- A batch that fires takes the experiment's turn (controller/flipper.py) with its sequence
-- number, and gives it back once its announcement is out (turn_end.lua): so fires and the
-- flipper's decisions reach the assignments topic in the order of their numbers. It does not
-- fire while another holds the turn, nor while a decision is still to be published. Nor does
-- a timer's save (timer = 1) go through then: it would move the watermark past the prices of
-- a batch (on any worker) that waits to fire until the decision is out, and they would count
-- as stale. Nor once the decision is out, while such a batch has not had its next try: a
-- batch refused for the turn or a pending decision leaves a mark (its owner in the set
-- trigger_waits, which lives lease_ms after the last mark), which a timer's save respects
-- while any batch's stands, and which its own save clears (one owner, not the set: another
-- batch may still wait).
-- KEYS: tracker state hash, triggers hash, experiment state, trigger version, the turn,
--       the waiting batch's mark
-- ARGV: expected trigger version, n, (field, value) * n, m, gone field * m,
--       t, (product, period) * t, owner, lease_ms, timer (1 or 0)
-- Returns {new trigger version, seq or -1}, or {-1, trigger version, code} with nothing
-- written: code 1 the version moved (the experiment runs), 0 it does not run, 2 the turn is
-- another's, 3 a decision is still to be published.
local tv = tonumber(redis.call('GET', KEYS[4]) or '0')
local st = redis.call('HMGET', KEYS[3], 'status', 'seq', 'published')
if st[1] ~= 'running' then return {-1, tv, 0} end
if tv ~= tonumber(ARGV[1]) then return {-1, tv, 1} end
-- where the fires start, and the owner after them
local i = 2
local n = tonumber(ARGV[i]); i = i + 1 + 2 * n
local m = tonumber(ARGV[i]); i = i + 1 + m
local t = tonumber(ARGV[i])
local owner, lease, timer = ARGV[i + 1 + 2 * t], ARGV[i + 2 + 2 * t], ARGV[i + 3 + 2 * t]
local pending = tonumber(st[2] or '0') > tonumber(st[3] or st[2] or '0')
if timer == '1' and (pending or redis.call('EXISTS', KEYS[6]) == 1) then
  return {-1, tv, 3}
end
if t > 0 then
  local held = redis.call('GET', KEYS[5])
  if held and held ~= owner then
    -- a batch's mark only: a timer's save never clears one, and its own would hold it up
    if timer ~= '1' then
      redis.call('SADD', KEYS[6], owner)
      redis.call('PEXPIRE', KEYS[6], lease)
    end
    return {-1, tv, 2}
  end
  if pending then
    redis.call('SADD', KEYS[6], owner)
    redis.call('PEXPIRE', KEYS[6], lease)
    return {-1, tv, 3}
  end
end
if timer ~= '1' then redis.call('SREM', KEYS[6], owner) end
i = 2
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]); i = i + 2 end
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do redis.call('HDEL', KEYS[1], ARGV[i]); i = i + 1 end
n = tonumber(ARGV[i]); i = i + 1
local seq = -1
if n > 0 then
  for _ = 1, n do redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]); i = i + 2 end
  seq = redis.call('HINCRBY', KEYS[3], 'seq_counter', 1)
  redis.call('SET', KEYS[5], owner, 'PX', lease)
end
return {redis.call('INCR', KEYS[4]), seq}
