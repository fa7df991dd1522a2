--! acl GET turn
--! acl HMGET state
--! acl HSET state
--! acl HINCRBY state
--! acl HGET trigger_kept
--! acl HSET triggers
--! acl HDEL trigger_kept
-- Record a lifecycle decision (controller/lifecycle.py) in one step, by the turn's holder and
-- only if the state is still the one it decided from (compare and set).
-- A decision that changes what a pricing system must do (the mode or the period in force)
-- takes the next sequence number, and 'seq' names it; 'published' follows once its messages
-- are out (published.lua). A holder that finds seq > published redoes that decision, with
-- the same number: the state (status, frozen, flipped_period) determines its messages.
-- A triggered experiment's fires kept while a decision of it waited for the broker
-- (trigger_save.lua) that a decision was made with (its records and messages hold them:
-- controller/flipper.py reads them beside the triggers) move to the triggers hash in this
-- same step: recorded for the decisions after it, and never announced by a later save. So
-- a pause, resume or stop decided before a save carried them out accounts for them once:
-- a pause's messages show control and the fires stay recorded for the resume, a resume's
-- messages put them in force from the resume, a stop ends them.
-- KEYS: the experiment's state, its turn, its triggers, its kept fires
-- ARGV: owner, expected status, frozen, flipped_period, seq; new status, frozen,
--       flipped_period; publish (1/0); flips, missed flips, backfilled periods to add;
--       the freezes the messages are built with (JSON), the event it announces (JSON);
--       the 'triggered' events of the kept fires it takes in (JSON: a redo repeats them
--       too); k, the kept products the decision was made with * k
-- Returns the decision's sequence number, 0 when it publishes nothing, or -1 when the turn
-- is lost or the state moved (nothing written).
local st = KEYS[1]
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return -1 end
local cur = redis.call('HMGET', st, 'status', 'frozen', 'flipped_period', 'seq')
if (cur[1] or '') ~= ARGV[2] or (cur[2] or '0') ~= ARGV[3] or (cur[3] or '-1') ~= ARGV[4]
   or (cur[4] or '0') ~= ARGV[5] then
  return -1
end
redis.call('HSET', st, 'status', ARGV[6], 'frozen', ARGV[7], 'flipped_period', ARGV[8])
if ARGV[10] ~= '0' then redis.call('HINCRBY', st, 'flips', ARGV[10]) end
if ARGV[11] ~= '0' then redis.call('HINCRBY', st, 'missed_flips', ARGV[11]) end
if ARGV[12] ~= '0' then redis.call('HINCRBY', st, 'backfilled', ARGV[12]) end
for j = 17, 16 + tonumber(ARGV[16] or '0') do
  local period = redis.call('HGET', KEYS[4], ARGV[j])
  if period then
    redis.call('HSET', KEYS[3], ARGV[j], period)
    redis.call('HDEL', KEYS[4], ARGV[j])
  end
end
if ARGV[9] == '1' then
  local seq = redis.call('HINCRBY', st, 'seq_counter', 1)
  redis.call('HSET', st, 'seq', seq, 'dfreezes', ARGV[13], 'devent', ARGV[14],
             'dfired', ARGV[15] or '[]')
  return seq
end
return 0
