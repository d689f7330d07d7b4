-- Keep a value for one page, for the rounds after this one. The first put of a round
-- keeps what the rounds before left as 'earlier', which get answers until the round ends;
-- a repeated put (a call sent again after an outage) changes nothing more.
-- ARGV: prefix, epoch, the request's signed fingerprint, '-' for nothing or '=' and text.
if gone() then return GONE end
local round, earlier = current_round(), '-'
local entry = redis.call('HGET', MEMORY, ARGV[3])
if entry then
  local put, value, before = unmemo(entry)
  earlier = value
  if put == round then earlier = before end
end
redis.call('HSET', MEMORY, ARGV[3], round .. '\t' .. #ARGV[4] .. '\t' .. ARGV[4] .. earlier)
return 1
