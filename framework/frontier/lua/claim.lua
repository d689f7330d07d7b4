-- Lease up to `count` requests, each the best request of the best host that may be visited
-- now, and say how long to wait if fewer could be leased.
-- ARGV: prefix, worker, call, lease seconds, jitter (0-1), how many expired leases, due
-- requests and rested hosts to move at most (bounded, so a claim costs O(log n)), count.
-- Returns {'lease', wait, counts, id, host, json, token, id, host, json, token, ...}, with
-- at least one lease and wait '' if all `count` were leased; else {'wait', seconds, counts}
-- or {'over', '', counts} when nothing is pending, delayed or leased by any worker.
local worker, call = ARGV[2], ARGV[3]
local lease, jitter, sweep = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local count = tonumber(ARGV[7])
-- How often a worker asks again while others hold leases: it is not told when they add
-- requests, and one call per poll for all its idle claims is cheap.
local POLL = 0.05
local t = now()
redis.call('HSET', WORKERS, worker, t)

-- Each lease's token is unique: the worker, the call, and its place in the call's answer.
local function token_of(i)
  return worker .. '#' .. call .. '.' .. i
end

local function leased(ids)
  local reply = {'lease', '', ''}
  for i, id in ipairs(ids) do
    local host, _, json = unrecord(redis.call('HGET', REQ, id))
    for _, value in ipairs({id, host, json, token_of(i)}) do reply[#reply + 1] = value end
  end
  return reply
end

-- How long until something may change: a host rests no more, a retry is due, a lease ends.
local function wait(c)
  local soonest = math.huge
  for _, key in ipairs({WAITING, DELAYED, LEASES}) do
    local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')[2]
    if first then soonest = math.min(soonest, tonumber(first)) end
  end
  local seconds = soonest - t
  if c[1] + c[3] > 0 then  -- another worker may settle a lease or add requests at any time
    seconds = math.min(seconds, POLL)
  end
  return tostring(math.max(seconds, 0))
end

local again = recall(worker, call)
if again then  -- a repeated call: its leases that are still ours, or what it said then
  local ids = {}
  for id in string.gmatch(again, '[^,]+') do
    if redis.call('HGET', TOKENS, id) == token_of(#ids + 1) then ids[#ids + 1] = id end
  end
  if #ids > 0 then
    local reply = leased(ids)
    reply[3] = counts()
    return reply
  end
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

local ids = {}
while #ids < count do
  local entry = redis.call('ZRANGE', READY, 0, 0)[1]
  if not entry then break end
  local host = string.sub(entry, 13)
  local key, queue = host_key(host), queue_key(host)
  local id = redis.call('ZRANGE', queue, 0, 0)[1]
  redis.call('ZREM', queue, id)
  redis.call('ZADD', LEASES, t + lease, id)
  ids[#ids + 1] = id
  redis.call('HSET', TOKENS, id, token_of(#ids))
  bump('pending', -1)
  redis.call('HINCRBY', key, 'inflight', 1)
  local pace = redis.call('HMGET', key, 'next', 'delay', 'delay0', 'interval')
  local next_at = math.max(num(pace[1]), t + gap_of(pace[2], pace[3], pace[4], jitter))
  redis.call('HSET', key, 'last', t, 'next', next_at)
  file(host, t)
end
if #ids > 0 then remember(worker, call, table.concat(ids, ',')) end

local c = counts()
if #ids > 0 then
  local reply = leased(ids)
  reply[3] = c
  if #ids < count then reply[2] = wait(c) end
  return reply
end
if c[1] + c[2] + c[3] == 0 then
  return {'over', '', c}
end
return {'wait', wait(c), c}
