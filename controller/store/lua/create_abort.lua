-- Drop the creation's lease if it is still this attempt's (catalog keys). Returns
-- 'committed' if the experiment was committed by this attempt after all (its reply lost),
-- else 'aborted'.
-- KEYS: the creation's lease, holders hash; ARGV: id, gen
if redis.call('GET', KEYS[1]) == ARGV[2] then redis.call('DEL', KEYS[1]) end
if redis.call('HGET', KEYS[2], ARGV[1]) == 'running|'..ARGV[2] then return 'committed' end
return 'aborted'
