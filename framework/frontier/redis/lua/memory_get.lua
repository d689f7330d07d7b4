-- Read what earlier rounds left for one page: during a round, get answers what the rounds
-- before it left, not what this one put (see memory_put.lua).
-- ARGV: prefix, epoch, the request's signed fingerprint. Returns the text, or nil.
if gone() then return GONE end
local entry = redis.call('HGET', MEMORY, ARGV[3])
if not entry then return false end
local round, value, earlier = unmemo(entry)
local answer = value
if round == current_round() then answer = earlier end
if answer == '-' then return false end
return string.sub(answer, 2)
