-- Shared by every fw frontier script: RedisFrontier puts this text in front of each one.
--
-- ARGV[1] is the crawl's key prefix. The keys a script touches depend on the hosts it
-- meets, so they cannot all be declared in KEYS: this needs a standalone Redis (or one
-- Cluster slot), not a Cluster spreading the crawl's keys. Every time comes from the
-- server's clock, so workers on several machines agree without synchronised clocks.

local P = ARGV[1]
local META, REQ, SEEN = P .. 'meta', P .. 'req', P .. 'seen:'
local READY, WAITING, HOSTS = P .. 'ready', P .. 'waiting', P .. 'hosts'
local LEASES, TOKENS, DELAYED = P .. 'leases', P .. 'tokens', P .. 'delayed'
local WORKERS, FAILURES = P .. 'workers', P .. 'failures'
-- How many answers each worker's call record keeps: far more than it has calls in flight.
local CALLS_KEPT = 4096

local function now()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end

local function num(value)
  return tonumber(value) or 0
end

local function host_key(host)
  return P .. 'h:' .. host
end

local function queue_key(host)
  return P .. 'q:' .. host
end

-- The sizes every script reports, for the worker's cached counts(); the sets that hold
-- the delayed and leased requests are counted exactly, the rest by counters.
local function counts()
  local c = redis.call('HMGET', META, 'pending', 'seen', 'done', 'failed')
  return {num(c[1]), redis.call('ZCARD', DELAYED), redis.call('ZCARD', LEASES),
          num(c[2]), num(c[3]), num(c[4])}
end

-- A live request is stored as host, priority and JSON, so that moving it between queues
-- never decodes the JSON (which escapes every newline).
local function record(host, priority, json)
  return host .. '\n' .. priority .. '\n' .. json
end

local function unrecord(value)
  local host, priority, at = string.match(value, '^([^\n]*)\n([^\n]*)\n()')
  return host, tonumber(priority), string.sub(value, at)
end

-- A repeated call (the connection dropped before its answer came) gets the first answer.
local function recall(worker, call)
  return redis.call('HGET', P .. 'calls:' .. worker, call)
end

local function remember(worker, call, answer)
  local key = P .. 'calls:' .. worker
  redis.call('HSET', key, call, answer)
  redis.call('HDEL', key, tostring(tonumber(call) - CALLS_KEPT))
end

-- The host's limits come from the project file, the same for every worker.
local function set_policy(host, concurrency, delay, interval)
  redis.call('HSET', host_key(host), 'conc', concurrency, 'delay0', delay, 'interval', interval)
  redis.call('SADD', HOSTS, host)
end

-- Seconds before the host's next start: its delay jittered by 0.5-1.5x, or its rate's.
local function gap(host, jitter)
  local s = redis.call('HMGET', host_key(host), 'delay', 'delay0', 'interval')
  local delay = tonumber(s[1]) or num(s[2])
  local jittered = 0
  if delay > 0 then jittered = delay * (0.5 + jitter) end
  return math.max(jittered, num(s[3]))
end

-- Put the host where its next request will be found: READY (by the rank of its best
-- request, ties by filing order) if it may be visited now, WAITING (by when it may) if
-- it must rest, neither if it has nothing queued or all its slots are taken.
local function file(host, t)
  local key = host_key(host)
  local s = redis.call('HMGET', key, 'entry', 'inflight', 'conc', 'next')
  if s[1] then
    redis.call('ZREM', READY, s[1])
    redis.call('HDEL', key, 'entry')
  end
  redis.call('ZREM', WAITING, host)
  local best = redis.call('ZRANGE', queue_key(host), 0, 0, 'WITHSCORES')
  if #best == 0 or num(s[2]) >= (tonumber(s[3]) or 1) then
    return
  end
  if num(s[4]) <= t then
    local entry = string.format('%012d', redis.call('HINCRBY', META, 'filed', 1)) .. host
    redis.call('ZADD', READY, best[2], entry)
    redis.call('HSET', key, 'entry', entry)
  else
    redis.call('ZADD', WAITING, s[4], host)
  end
end

-- Queue a stored request in its host's queue: highest priority first, then oldest id.
local function enqueue(id, host, priority, t)
  redis.call('ZADD', queue_key(host), -priority, id)
  redis.call('HINCRBY', META, 'pending', 1)
  local entry = redis.call('HGET', host_key(host), 'entry')
  if entry then  -- a ready host keeps its place, moving up if this request outranks it
    if -priority < num(redis.call('ZSCORE', READY, entry)) then
      redis.call('ZADD', READY, -priority, entry)
    end
  elseif not redis.call('ZSCORE', WAITING, host) then
    file(host, t)
  end
end

-- Queue the requests from ARGV[from] on (8 values each) whose fingerprint is new; return
-- their positions. An empty fingerprint (dont_filter) is never a duplicate.
local function push(from, t)
  local new = {}
  for i = from, #ARGV, 8 do
    local fp = ARGV[i + 1]
    if fp == '' or redis.call('SADD', SEEN .. ARGV[i], fp) == 1 then
      local host, priority = ARGV[i + 2], tonumber(ARGV[i + 3])
      local id = string.format('%012d', redis.call('HINCRBY', META, 'seq', 1))
      set_policy(host, ARGV[i + 5], ARGV[i + 6], ARGV[i + 7])
      redis.call('HSET', REQ, id, record(host, priority, ARGV[i + 4]))
      enqueue(id, host, priority, t)
      new[#new + 1] = (i - from) / 8 + 1
    end
  end
  redis.call('HINCRBY', META, 'seen', #new)
  return new
end

-- Return a leased request to its host's queue (its lease expired, or its worker stopped).
local function requeue(id, t)
  redis.call('ZREM', LEASES, id)
  redis.call('HDEL', TOKENS, id)
  local host, priority = unrecord(redis.call('HGET', REQ, id))
  redis.call('HINCRBY', host_key(host), 'inflight', -1)
  enqueue(id, host, priority, t)
end
