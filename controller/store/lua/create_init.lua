--! acl HGET state
--! acl DEL state
--! acl SET spec
--! acl HSET state
-- Write a new experiment's spec and state in its own slot, before it is committed to the
-- catalog (create_commit.lua), with status 'creating': the flipper, the routes and the
-- operator commands leave it alone until create_open.lua makes it 'running' (after the
-- commit; the flipper's tick completes that step for a worker that died in between). A
-- creation whose lease expired while another began (a larger fence) writes nothing.
-- KEYS: spec, state; ARGV: fence, gen, spec_json, created_ms, n_products, created_by (who
-- sent the create command: '' when not known)
-- Returns 'ok' or 'lost'.
if tonumber(redis.call('HGET', KEYS[2], 'fence') or '0') > tonumber(ARGV[1]) then
  return 'lost'
end
redis.call('DEL', KEYS[2])
redis.call('SET', KEYS[1], ARGV[3])
redis.call('HSET', KEYS[2], 'status', 'creating', 'flipped_period', -1, 'seq', 0, 'published', 0,
           'missed_flips', 0, 'created_ms', ARGV[4], 'claim', ARGV[2], 'n_products', ARGV[5],
           'fence', ARGV[1])
if ARGV[6] and ARGV[6] ~= '' then
  redis.call('HSET', KEYS[2], 'created_by', ARGV[6])
end
return 'ok'
