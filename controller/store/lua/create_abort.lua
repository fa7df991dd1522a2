-- ARGV: prefix, id, gen: drop the creation marker if it is still this attempt's
local marker = ARGV[1]..':exp:'..ARGV[2]..':creating'
if redis.call('GET', marker) == ARGV[3] then redis.call('DEL', marker) end
return 1
