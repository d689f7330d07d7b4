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

-- Every call into Redis costs about a microsecond on top of its own work, so the crawl's
-- counters (pending, seen, done, failed) and sequences (seq, filed), which change many
-- times in one script, are counted here and written once, by flush() at its end.
local changed, sequences = {}, {}

local function bump(field, by)
  changed[field] = (changed[field] or 0) + by
end

-- Return the next number of a sequence: request ids, the order hosts were filed in.
local function next_of(field)
  sequences[field] = (sequences[field] or num(redis.call('HGET', META, field))) + 1
  bump(field, 1)
  return sequences[field]
end

local function flush()
  for field, by in pairs(changed) do
    if by ~= 0 then redis.call('HINCRBY', META, field, by) end
  end
  changed = {}
end

-- The sizes every script reports, for the worker's cached counts(); the sets that hold
-- the delayed and leased requests are counted exactly, the rest by counters. It flushes
-- the counters, so every script that changes them ends with counts() or flush().
local function counts()
  flush()
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

-- The host's limits come from the project file, the same for every worker: stored once
-- per script for each host it meets.
local policies_set = {}

local function set_policy(host, concurrency, delay, interval)
  if policies_set[host] then return end
  policies_set[host] = true
  redis.call('HSET', host_key(host), 'conc', concurrency, 'delay0', delay, 'interval', interval)
  redis.call('SADD', HOSTS, host)
end

-- Seconds before the host's next start: its delay (tuned, else configured) jittered by
-- 0.5-1.5x, or its rate's interval if that is longer.
local function gap_of(tuned, configured, interval, jitter)
  local delay = tonumber(tuned) or num(configured)
  local jittered = 0
  if delay > 0 then jittered = delay * (0.5 + jitter) end
  return math.max(jittered, num(interval))
end

local function gap(host, jitter)
  local s = redis.call('HMGET', host_key(host), 'delay', 'delay0', 'interval')
  return gap_of(s[1], s[2], s[3], jitter)
end

-- Put the host where its next request will be found: READY (by the rank of its best
-- request, ties by filing order) if it may be visited now, WAITING (by when it may) if
-- it must rest, neither if it has nothing queued or all its slots are taken.
local function file(host, t)
  local key = host_key(host)
  local s = redis.call('HMGET', key, 'entry', 'inflight', 'conc', 'next')
  if s[1] then  -- a host is in READY (with its entry) or in WAITING, never in both
    redis.call('ZREM', READY, s[1])
  else
    redis.call('ZREM', WAITING, host)
  end
  local best = redis.call('ZRANGE', queue_key(host), 0, 0, 'WITHSCORES')
  local free = #best > 0 and num(s[2]) < (tonumber(s[3]) or 1)
  if free and num(s[4]) <= t then
    local entry = string.format('%012d', next_of('filed')) .. host
    redis.call('ZADD', READY, best[2], entry)
    redis.call('HSET', key, 'entry', entry)
    return
  end
  if s[1] then redis.call('HDEL', key, 'entry') end
  if free then redis.call('ZADD', WAITING, s[4], host) end
end

-- One of the host's requests is no longer in flight. A host that is ready already stays
-- where it is; one whose slots were all taken may be filed now.
local function release(host, t)
  local key = host_key(host)
  redis.call('HINCRBY', key, 'inflight', -1)
  if not redis.call('HGET', key, 'entry') then
    file(host, t)
  end
end

-- Queue a stored request in its host's queue: highest priority first, then oldest id.
local function enqueue(id, host, priority, t)
  redis.call('ZADD', queue_key(host), -priority, id)
  bump('pending', 1)
  local entry = redis.call('HGET', host_key(host), 'entry')
  if entry then  -- a ready host keeps its place, moving up if this request outranks it
    if -priority < num(redis.call('ZSCORE', READY, entry)) then
      redis.call('ZADD', READY, -priority, entry)
    end
  elseif not redis.call('ZSCORE', WAITING, host) then
    file(host, t)
  end
end

-- Queue the requests in ARGV[from] to ARGV[last] whose fingerprint is new; return their
-- positions among them. Each is one argument (one is far cheaper to send than eight):
-- fingerprint shard, fingerprint, host, priority, the host's concurrency, delay and
-- interval, separated by tabs, then the JSON, which has no raw tab. An empty fingerprint
-- (dont_filter) is never a duplicate.
local REQUEST = '^([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t()'

local function push(from, last, t)
  local new = {}
  for i = from, last do
    local shard, fp, host, priority, conc, delay, interval, at = string.match(ARGV[i], REQUEST)
    if fp == '' or redis.call('SADD', SEEN .. shard, fp) == 1 then
      priority = tonumber(priority)
      local id = string.format('%012d', next_of('seq'))
      set_policy(host, conc, delay, interval)
      redis.call('HSET', REQ, id, record(host, priority, string.sub(ARGV[i], at)))
      enqueue(id, host, priority, t)
      new[#new + 1] = i - from + 1
    end
  end
  bump('seen', #new)
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
