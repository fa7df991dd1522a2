--! acl HGET adaptive_look
--! acl HSET adaptive_look
-- Keep an adaptive ladder's latest look (issue #57): written only when it used at least as
-- many periods as the one stored, so that an older worker's late write never replaces a newer
-- look. KEYS: the experiment's look hash; ARGV: periods, the look (JSON). Returns 1 if stored.
local held = redis.call('HGET', KEYS[1], 'periods')
if held and tonumber(held) > tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'periods', ARGV[1], 'look', ARGV[2])
return 1
