--! acl HGET state
--! acl HSET state
-- A decision's messages are out: 'published' moves up to its sequence number (never down).
-- KEYS: the experiment's state; ARGV: seq. Returns 1 if it moved.
local cur = tonumber(redis.call('HGET', KEYS[1], 'published') or '0')
if tonumber(ARGV[1]) > cur then
  redis.call('HSET', KEYS[1], 'published', ARGV[1])
  return 1
end
return 0
