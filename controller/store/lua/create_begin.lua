-- ARGV: prefix, id, gen, lease_ms
local p, id = ARGV[1], ARGV[2]
if redis.call('SISMEMBER', p..':exp:index', id) == 1 then return 'exists' end
if not redis.call('SET', p..':exp:'..id..':creating', ARGV[3], 'NX', 'PX', ARGV[4]) then
  return 'busy'
end
return 'ok'
