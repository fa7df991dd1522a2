--! acl GET trigger_version turn
--! acl HMGET state
--! acl HSET trigger_state triggers trigger_kept
--! acl HDEL trigger_state
--! acl HGETALL trigger_kept
--! acl DEL trigger_kept
--! acl HINCRBY state
--! acl SET turn
--! acl INCR trigger_version
--! acl EXISTS trigger_waits
--! acl SADD trigger_waits
--! acl PEXPIRE trigger_waits
--! acl SREM trigger_waits
--! acl HSET trigger_saved
--! acl PEXPIRE trigger_saved
-- Save a batch's trigger state only if nobody else wrote it since it was read (optimistic:
-- one round trip, no lock), and only while the experiment runs: a pause or stop moves its
-- 'status' in this same slot first, so no fire takes a sequence number after the stop's own.
-- A batch that fires takes the experiment's turn (controller/flipper.py) with its sequence
-- number, and gives it back once its announcement is out (turn_end.lua): so fires and the
-- flipper's decisions reach the assignments topic in the order of their numbers.
-- While a decision is still to be published (seq > published), a batch's fires are KEPT
-- (issue #56, item 3): its state is saved as always (the fired products, its prices, the
-- watermark), but the fires go to the kept hash, not to the triggers hash (which the
-- decision's redo reads: its messages must stay the ones it was decided with), and take
-- no sequence number nor the turn. The batch goes on (it never waits for a decision the
-- broker may refuse for good). The first save that goes through once the decision is out
-- (a timer's or a batch's, of any worker) carries them out: it moves them to the triggers
-- hash, with its own fires, under one new sequence number and the turn, and returns them
-- for its announcement. So a kept fire is announced once, after the decision's messages.
-- A lifecycle decision made before such a save (a pause, resume or stop just after the
-- decision was published again, or a flip) is made with the kept fires and moves them to
-- the triggers hash in its own step (decide.lua): its messages account for them (a pause's
-- show control and keep them recorded for the resume, a resume's put them in force, a
-- stop's end them), and no save announces them after it.
-- A timer's save (timer = 1) does not go through while a decision is to be published, nor
-- while a batch waits for the turn another holds (its mark, its owner in the set
-- trigger_waits, which lives lease_ms after the last mark): its watermark would make that
-- batch's prices stale (issue #56, item 2). A batch's save clears its own mark (one owner,
-- not the set: another batch may still wait).
-- With a save's mark (PRICELAB_REDIS__WAIT_REPLICAS: an eighth key and a last argument;
-- without them nothing more is written, and the call is the one before marks), the save
-- also records the mark in the hash trigger_saved (it lives an hour after the last mark): a
-- replica barrier reads it to know this save, and no other, is on the primary it reached
-- (controller/trigger_runner.py), and the batch deletes it once replicated.
-- KEYS: tracker state hash, triggers hash, experiment state, trigger version, the turn,
--       the waiting batch's mark, the kept fires[, the saves' marks]
-- ARGV: expected trigger version, n, (field, value) * n, m, gone field * m,
--       t, (product, period) * t, owner, lease_ms, timer (1 or 0)[, mark]
-- Returns {new trigger version, seq or -1, kept (1: the fires were kept, 0), the kept
-- products carried out with seq...}, or {-1, trigger version, code} with nothing written:
-- code 1 the version moved (the experiment runs), 0 it does not run, 2 the turn is
-- another's, 3 (a timer only) a decision is to be published or a batch waits.
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
local mark = ''
if #KEYS >= 8 then mark = ARGV[i + 4 + 2 * t] end
local function version()
  local v = redis.call('INCR', KEYS[4])
  if mark ~= '' then
    redis.call('HSET', KEYS[8], mark, v)
    redis.call('PEXPIRE', KEYS[8], 3600000)
  end
  return v
end
local pending = tonumber(st[2] or '0') > tonumber(st[3] or st[2] or '0')
if timer == '1' and (pending or redis.call('EXISTS', KEYS[6]) == 1) then
  return {-1, tv, 3}
end
local kept = {}
if not pending then kept = redis.call('HGETALL', KEYS[7]) end
if not pending and (t > 0 or #kept > 0) then
  local held = redis.call('GET', KEYS[5])
  if held and held ~= owner then
    -- a batch's mark only: a timer's save never clears one, and its own would hold it up
    if timer ~= '1' then
      redis.call('SADD', KEYS[6], owner)
      redis.call('PEXPIRE', KEYS[6], lease)
    end
    return {-1, tv, 2}
  end
end
if timer ~= '1' then redis.call('SREM', KEYS[6], owner) end
i = 2
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]); i = i + 2 end
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do redis.call('HDEL', KEYS[1], ARGV[i]); i = i + 1 end
n = tonumber(ARGV[i]); i = i + 1
if pending then
  for _ = 1, n do redis.call('HSET', KEYS[7], ARGV[i], ARGV[i + 1]); i = i + 2 end
  return {version(), -1, n > 0 and 1 or 0}
end
local out = {0, -1, 0}
if n > 0 or #kept > 0 then
  for _ = 1, n do redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]); i = i + 2 end
  for j = 1, #kept, 2 do
    redis.call('HSET', KEYS[2], kept[j], kept[j + 1])
    out[#out + 1] = kept[j]
  end
  if #kept > 0 then redis.call('DEL', KEYS[7]) end
  out[2] = redis.call('HINCRBY', KEYS[3], 'seq_counter', 1)
  redis.call('SET', KEYS[5], owner, 'PX', lease)
end
out[1] = version()
return out
