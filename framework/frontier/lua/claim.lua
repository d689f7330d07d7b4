-- Lease the best request of the best host that may be visited now, or say how long to wait.
-- ARGV: prefix, worker, call, lease seconds, jitter (0-1), how many expired leases, due
-- requests and rested hosts to move at most (bounded, so a claim costs O(log n)).
-- Returns {'lease', id, host, json, token, counts}, {'wait', seconds, counts} or
-- {'over', '', counts} when nothing is pending, delayed or leased by any worker.
local worker, call = ARGV[2], ARGV[3]
local lease, jitter, sweep = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local token = worker .. '#' .. call
local t = now()
redis.call('HSET', WORKERS, worker, t)

local function leased(id, host)
  local _, _, json = unrecord(redis.call('HGET', REQ, id))
  return {'lease', id, host, json, token, counts()}
end

local again = recall(worker, call)
if again and redis.call('HGET', TOKENS, again) == token then  -- this call's lease, still ours
  return leased(again, unrecord(redis.call('HGET', REQ, again)))
end

for _, id in ipairs(redis.call('ZRANGEBYSCORE', LEASES, '-inf', t, 'LIMIT', 0, sweep)) do
  requeue(id, t)
end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', DELAYED, '-inf', t, 'LIMIT', 0, sweep)) do
  redis.call('ZREM', DELAYED, id)
  local host, priority = unrecord(redis.call('HGET', REQ, id))
  redis.call('HINCRBY', host_key(host), 'delayed', -1)
  enqueue(id, host, priority, t)
end
for _, host in ipairs(redis.call('ZRANGEBYSCORE', WAITING, '-inf', t, 'LIMIT', 0, sweep)) do
  file(host, t)
end

local entry = redis.call('ZRANGE', READY, 0, 0)[1]
if entry then
  local host = string.sub(entry, 13)
  local key, queue = host_key(host), queue_key(host)
  local id = redis.call('ZRANGE', queue, 0, 0)[1]
  redis.call('ZREM', queue, id)
  redis.call('ZADD', LEASES, t + lease, id)
  redis.call('HSET', TOKENS, id, token)
  redis.call('HINCRBY', META, 'pending', -1)
  redis.call('HINCRBY', key, 'inflight', 1)
  local next_at = math.max(num(redis.call('HGET', key, 'next')), t + gap(host, jitter))
  redis.call('HSET', key, 'last', t, 'next', next_at)
  file(host, t)
  remember(worker, call, id)
  return leased(id, host)
end

local c = counts()
if c[1] + c[2] + c[3] == 0 then
  return {'over', '', c}
end
local soonest = math.huge
for _, key in ipairs({WAITING, DELAYED, LEASES}) do
  local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')[2]
  if first then soonest = math.min(soonest, tonumber(first)) end
end
local wait = soonest - t
if c[1] + c[3] > 0 then  -- another worker may settle a lease or add requests at any time
  wait = math.min(wait, 0.25)
end
return {'wait', tostring(math.max(wait, 0)), c}
