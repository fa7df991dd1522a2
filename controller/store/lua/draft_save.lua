--! acl SISMEMBER index
--! acl EXISTS creating
--! acl HSET drafts
--! acl SET draft_specs
-- Save a draft (catalog keys), unless its id is an experiment's or one being created: an
-- experiment's id is never a draft again.
-- KEYS: experiments index, the id's creation lease, drafts hash, the draft's spec;
-- ARGV: id, the draft's summary (JSON), its spec (JSON)
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then return 'experiment' end
if redis.call('EXISTS', KEYS[2]) == 1 then return 'creating' end
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
redis.call('SET', KEYS[4], ARGV[3])
return 'ok'
