--! acl GET creating
--! acl SADD index
--! acl HSET holders
--! acl INCR version
--! acl DEL creating
-- Make a created experiment visible, if its lease is still this creation's (catalog keys):
-- indexed, its claims counted as running (holders), caches invalidated, lease dropped.
-- KEYS: the creation's lease, experiments index, holders hash, version; ARGV: id, gen
if redis.call('GET', KEYS[1]) ~= ARGV[2] then return 'lost' end
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('HSET', KEYS[3], ARGV[1], 'running|'..ARGV[2])
redis.call('INCR', KEYS[4])
redis.call('DEL', KEYS[1])
return 'ok'
