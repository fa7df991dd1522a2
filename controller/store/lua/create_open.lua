--! acl HGET state
--! acl HSET state
-- Open a committed experiment (create_commit.lua): 'creating' -> 'running', if its state is
-- still this creation's. KEYS: state; ARGV: gen. Returns 1 if opened now, else 0.
if redis.call('HGET', KEYS[1], 'status') == 'creating'
    and redis.call('HGET', KEYS[1], 'claim') == ARGV[1] then
  redis.call('HSET', KEYS[1], 'status', 'running')
  return 1
end
return 0
