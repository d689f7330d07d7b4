-- Settle a lease as done or failed and queue what the page discovered, in one step.
-- ARGV: prefix, worker, call, request id, lease token, 'done' or 'failed', reason, then
-- the discovered requests (8 values each, see push in lib.lua).
-- Returns {'ok', positions of the new requests, counts} or {'lost', '', counts} when the
-- token no longer holds the lease (it expired and was returned to the queue).
local worker, call, id, token, outcome = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local answer = recall(worker, call)
if answer then
  return {'ok', answer, counts()}
end
if redis.call('HGET', TOKENS, id) ~= token then
  return {'lost', '', counts()}
end
local t = now()
local host, _, json = unrecord(redis.call('HGET', REQ, id))
redis.call('ZREM', LEASES, id)
redis.call('HDEL', TOKENS, id)
redis.call('HDEL', REQ, id)
redis.call('HINCRBY', META, outcome, 1)
redis.call('HINCRBY', host_key(host), outcome, 1)
redis.call('HINCRBY', host_key(host), 'inflight', -1)
if outcome == 'failed' then  -- kept for the record: why, and the request itself
  redis.call('HSET', FAILURES, id, ARGV[7] .. '\n' .. json)
end
file(host, t)
answer = table.concat(push(8, t), ',')
remember(worker, call, answer)
return {'ok', answer, counts()}
