-- Settle leases as done or failed and queue what their pages discovered, in one step.
-- ARGV: prefix, worker, call, then for each lease: one argument with its request id,
-- lease token, 'done' or 'failed', how many requests it discovered and the reason,
-- separated by tabs; then those requests (see push in lib.lua).
-- Returns {answers, counts}: for each lease in order, joined by '|', the positions of its
-- new requests (comma-separated), or '!' when the token no longer holds the lease (it
-- expired and was returned to the queue).
local worker, call = ARGV[2], ARGV[3]
local answer = recall(worker, call)
if answer then
  return {answer, counts()}
end
local t = now()

local function settle(id, token, outcome, reason, from, last)
  if redis.call('HGET', TOKENS, id) ~= token then
    return '!'
  end
  local host, _, json = unrecord(redis.call('HGET', REQ, id))
  redis.call('ZREM', LEASES, id)
  redis.call('HDEL', TOKENS, id)
  redis.call('HDEL', REQ, id)
  bump(outcome, 1)
  redis.call('HINCRBY', host_key(host), outcome, 1)
  if outcome == 'failed' then  -- kept for the record: why, and the request itself
    redis.call('HSET', FAILURES, id, reason .. '\n' .. json)
  end
  release(host, t)
  return table.concat(push(from, last, t), ',')
end

local answers, i = {}, 4
while i <= #ARGV do
  local id, token, outcome, found, reason =
    string.match(ARGV[i], '^([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$')
  local last = i + tonumber(found)
  answers[#answers + 1] = settle(id, token, outcome, reason, i + 1, last)
  i = last + 1
end
answer = table.concat(answers, '|')
remember(worker, call, answer)
return {answer, counts()}
