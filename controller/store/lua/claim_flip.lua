-- Claim a flip: a new claim gets the next sequence number; a stale claim (dead worker,
-- lease expired) is re-claimed with the SAME sequence number so a redo republishes the
-- same version.
-- ARGV: prefix, id, k, owner, lease_ms
local base = ARGV[1]..':exp:'..ARGV[2]
local st = base..':state'
local cur = tonumber(redis.call('HGET', st, 'flipped_period') or '-1')
if tonumber(ARGV[3]) <= cur then return {'done', ''} end
local claim = base..':flip:'..ARGV[3]
local held = redis.call('GET', claim)
if held then
  local owner = string.match(held, '^(.-)|')
  if owner ~= ARGV[4] then return {'busy', string.match(held, '|(.*)$') or ''} end
  redis.call('PEXPIRE', claim, ARGV[5])
  return {'mine', string.match(held, '|(.*)$')}
end
local seqkey = base..':flipseq:'..ARGV[3]
local seq = redis.call('GET', seqkey)
if not seq then
  seq = tostring(redis.call('HINCRBY', st, 'seq_counter', 1))
  redis.call('SET', seqkey, seq)
end
redis.call('SET', claim, ARGV[4]..'|'..seq, 'PX', ARGV[5])
return {'claimed', seq}
