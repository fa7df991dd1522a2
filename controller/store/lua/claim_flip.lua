-- Claim a flip: a new claim gets the next sequence number; a stale claim (dead worker,
-- lease expired) is re-claimed with the SAME sequence number so a redo republishes the
-- same version.
-- KEYS: the experiment's state, flip:{k}, flipseq:{k}; ARGV: k, owner, lease_ms
local st, claim, seqkey = KEYS[1], KEYS[2], KEYS[3]
-- a stopped or ended experiment takes no flip (a stop moves its status before it publishes its
-- kill switch with a later sequence number), nor one still being created
local status = redis.call('HGET', st, 'status')
if status ~= 'running' and status ~= 'paused' then return {'done', ''} end
local cur = tonumber(redis.call('HGET', st, 'flipped_period') or '-1')
if tonumber(ARGV[1]) <= cur then return {'done', ''} end
local held = redis.call('GET', claim)
if held then
  local owner = string.match(held, '^(.-)|')
  if owner ~= ARGV[2] then return {'busy', string.match(held, '|(.*)$') or ''} end
  redis.call('PEXPIRE', claim, ARGV[3])
  return {'mine', string.match(held, '|(.*)$')}
end
local seq = redis.call('GET', seqkey)
if not seq then
  seq = tostring(redis.call('HINCRBY', st, 'seq_counter', 1))
  redis.call('SET', seqkey, seq)
end
redis.call('SET', claim, ARGV[2]..'|'..seq, 'PX', ARGV[3])
return {'claimed', seq}
