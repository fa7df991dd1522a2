--! acl GET creating
--! acl SADD index
--! acl HSET holders
--! acl INCR version
--! acl DEL creating draft_specs
--! acl HDEL drafts
-- Make a created experiment visible, if its lease is still this creation's (catalog keys):
-- indexed, its claims counted as running (holders), caches invalidated, lease dropped, and
-- the draft of its id (if any) deleted in the same step: a launched draft is no draft.
-- KEYS: the creation's lease, experiments index, holders hash, version, drafts hash, the
-- draft's spec; ARGV: id, gen
if redis.call('GET', KEYS[1]) ~= ARGV[2] then return 'lost' end
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('HSET', KEYS[3], ARGV[1], 'running|'..ARGV[2])
redis.call('INCR', KEYS[4])
redis.call('DEL', KEYS[1])
redis.call('HDEL', KEYS[5], ARGV[1])
redis.call('DEL', KEYS[6])
return 'ok'
