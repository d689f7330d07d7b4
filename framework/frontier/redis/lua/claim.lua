-- Lease up to `count` requests, each the best request of the best host that may be visited
-- now, and say how long to wait if fewer could be leased.
-- ARGV: prefix, epoch, worker, call, lease seconds, jitter (0-1), how many expired
-- leases, due requests and rested hosts to move at most (bounded, so a claim costs
-- O(log n)), count.
-- Returns {'lease', wait, counts, id, host, json, token, id, host, json, token, ...}, with
-- at least one lease and wait '' if all `count` were leased; else {'wait', seconds, counts}
-- or {'over', '', counts} when nothing is pending, delayed or leased by any worker.
if gone() then return GONE end
local worker, call = ARGV[3], ARGV[4]
local lease, jitter, sweep = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local count = tonumber(ARGV[8])
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
  for i, value in ipairs(hmget(REQ, ids)) do
    local host, _, json = unrecord(value)
    append(reply, ids[i], host, json, token_of(i))
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
  add_to(host, 'delayed', -1)
  enqueue(id, host, priority, t)
end
for _, host in ipairs(redis.call('ZRANGEBYSCORE', WAITING, '-inf', t, 'LIMIT', 0, sweep)) do
  file(host, t)
end

-- Pop up to `room` of the host's best requests: the first, and those after it that rank
-- before `rival`, the next ready host's rank. One at a time, the host would have stayed
-- first in READY for each of them: these are the same leases, in a few calls.
local function take(host, room, rival)
  local queue, ids = queue_key(host), {}
  if not rival then
    local popped = redis.call('ZPOPMIN', queue, room)
    for i = 1, #popped, 2 do ids[#ids + 1] = popped[i] end
    return ids
  end
  -- Only those that outrank the rival are read: a host with a long queue of requests as
  -- good as the rival's gives one, not a page of them to throw away.
  ids = redis.call('ZRANGEBYSCORE', queue, '-inf', '(' .. rival, 'LIMIT', 0, room)
  if #ids == 0 then ids = redis.call('ZRANGE', queue, 0, 0) end
  redis.call('ZREMRANGEBYRANK', queue, 0, #ids - 1)
  return ids
end

-- Lease the best requests of the host whose ready entry is `top`.
local function lease_from(top, ids, expiries, tokens, expiry)
  local host = string.sub(top[1], 13)
  local h = host_state(host)
  local after, room = next_start(host, t, jitter), 1
  if after == t then  -- else the host rests after one start
    room = math.max(math.min(count - #ids, (tonumber(h.conc) or 1) - num(h.inflight)), 1)
  end
  local taken = take(host, room, tonumber(top[4]))
  for _, id in ipairs(taken) do
    ids[#ids + 1] = id
    append(expiries, expiry, id)
    append(tokens, id, token_of(#ids))
  end
  bump('pending', -#taken)
  set_field(host, 'inflight', num(h.inflight) + #taken)
  set_field(host, 'last', t)
  set_field(host, 'next', math.max(num(h.next), after))
  file(host, t)
end

local ids, expiries, tokens, expiry = {}, {}, {}, t + lease
while #ids < count do
  local top = redis.call('ZRANGE', READY, 0, 1, 'WITHSCORES')
  if not top[1] then break end
  local host = string.sub(top[1], 13)
  if host_state(host).entry == top[1] then
    lease_from(top, ids, expiries, tokens, expiry)
  else
    -- An entry its host no longer knows (the host's key was evicted or deleted): taken
    -- for ever, it would hold Redis in this loop. Dropped, and the host filed again.
    redis.call('ZREM', READY, top[1])
    file(host, t)
  end
end
if #ids > 0 then
  call_all('ZADD', LEASES, expiries, 2)
  call_all('HSET', TOKENS, tokens, 2)
  remember(worker, call, table.concat(ids, ','))
end

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
