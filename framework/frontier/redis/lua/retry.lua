-- Settle a lease by holding its request (as given: e.g. with its retry count) back.
-- ARGV: prefix, epoch, worker, call, request id, lease token, delay seconds, then the
-- request's host, priority, JSON, and that host's concurrency, delay and interval.
-- Returns {'ok', '', counts} or {'lost', '', counts}, as settle.lua does.
if gone() then return GONE end
local worker, call, id, token, delay = ARGV[3], ARGV[4], ARGV[5], ARGV[6], tonumber(ARGV[7])
if recall(worker, call) then
  return {'ok', '', counts()}
end
if redis.call('HGET', TOKENS, id) ~= token then
  return {'lost', '', counts()}
end
local t = now()
local old_host = unrecord(redis.call('HGET', REQ, id))
local host = ARGV[8]
redis.call('ZREM', LEASES, id)
redis.call('HDEL', TOKENS, id)
set_policy(host, ARGV[11], ARGV[12], ARGV[13])
redis.call('HSET', REQ, id, record(host, tonumber(ARGV[9]), ARGV[10]))
redis.call('ZADD', DELAYED, t + delay, id)
add_to(host, 'delayed', 1)
release(old_host, t)
remember(worker, call, '')
return {'ok', '', counts()}
