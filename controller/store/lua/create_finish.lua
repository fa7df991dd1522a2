-- ARGV: prefix, id, gen, spec_json, created_ms, n_products
local p, id, gen = ARGV[1], ARGV[2], ARGV[3]
local marker = p..':exp:'..id..':creating'
if redis.call('GET', marker) ~= gen then return 'lost' end
redis.call('SADD', p..':exp:index', id)
redis.call('SET', p..':exp:'..id..':spec', ARGV[4])
redis.call('HSET', p..':exp:'..id..':state', 'status', 'running', 'flipped_period', -1,
           'seq', 0, 'missed_flips', 0, 'created_ms', ARGV[5], 'claim', gen,
           'n_products', ARGV[6])
redis.call('INCR', p..':version')
redis.call('DEL', marker)
return 'ok'
