-- Shared by every fw frontier script: RedisFrontier puts this text in front of each one.
--
-- ARGV[1] is the crawl's key prefix, ARGV[2] its epoch (see gone()). The keys a script
-- touches depend on the hosts it meets, so they cannot all be declared in KEYS: this
-- needs a standalone Redis (or one Cluster slot), not a Cluster spreading the crawl's
-- keys. Every time comes from the server's clock, so workers on several machines agree
-- without synchronised clocks.

local P = ARGV[1]
local META, REQ, SEEN = P .. 'meta', P .. 'req', P .. 'seen:'
local READY, WAITING, HOSTS = P .. 'ready', P .. 'waiting', P .. 'hosts'
local LEASES, TOKENS, DELAYED = P .. 'leases', P .. 'tokens', P .. 'delayed'
local WORKERS, FAILURES = P .. 'workers', P .. 'failures'
-- The entry each ONCE key (a --retry-failed request's, see frontier.ONCE) was queued as.
local ONCE = P .. 'once'
-- The failed entries of each request by its fingerprint, for a retry to take over.
local FAILED_FP = P .. 'failed_fp'
-- The crawl's memory, which a new round keeps (see memory_put.lua): its field 'round' is
-- the current round's number (1 while absent), every other a page's entry.
local MEMORY = P .. 'memory'

-- Whether a key under the prefix is one of this crawl's, not another crawl's whose prefix
-- starts with this one's (a custom ?prefix=fw:shop:eu: under fw:shop:): --fresh deletes
-- only these.
local KINDS = {meta = true, req = true, hosts = true, ready = true, waiting = true,
               leases = true, tokens = true, delayed = true, failures = true,
               workers = true, memory = true, once = true, failed_fp = true}
-- A prefix with one of these as a part is refused (_prefix in __init__.py): it could nest.
local KINDS_OF = {seen = true, q = true, h = true, calls = true}

local function ours(key)
  local rest = string.sub(key, #P + 1)
  return KINDS[rest] or KINDS_OF[string.match(rest, '^(%a+):')] or false
end

-- The crawl's identity: a random epoch that open.lua gives a crawl it creates and every
-- worker then passes in ARGV[2]. Keys that vanished (FLUSHALL, a restart without
-- persistence, --fresh) would otherwise read as an empty crawl, that is a finished one:
-- each script that changes the crawl starts with `if gone() then return GONE end`, before
-- it writes anything, and the worker stops.
local GONE = redis.error_reply('FWGONE this crawl is not in this Redis any more')

local function gone()
  return redis.call('HGET', META, 'epoch') ~= ARGV[2]
end

-- How many answers each worker's call record keeps: far more than it has calls in flight.
local CALLS_KEPT = 4096

local function now()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end

local function num(value)
  return tonumber(value) or 0
end

-- The allowed domains of the crawl's running workers, if they are not `scope` ('' when
-- the caller has none to check): workers of one crawl must agree on them, or each drops as
-- offsite the pages only the others may visit. A worker stopped, or silent for `window`
-- seconds (a lease), is not running: a crawl resumed with other allowed_domains takes
-- them, as narrowing them on purpose between runs does.
local function running_scope(scope, worker, window)
  local kept = redis.call('HGET', META, 'scope')
  if scope == '' or not kept or kept == scope then return nil end
  local t, workers = now(), redis.call('HGETALL', WORKERS)
  for i = 1, #workers, 2 do
    local beat, rest = string.match(workers[i + 1], '^(%S+)(.*)$')
    if workers[i] ~= worker and rest == '' and t - tonumber(beat) <= window then
      return kept
    end
  end
  return nil
end

local function current_round()
  return tonumber(redis.call('HGET', MEMORY, 'round')) or 1
end

-- A page's memory entry: '<round>\t<size>\t<value><earlier>', the round that last put a
-- value, then what it put and what the rounds before it left, each '-' for nothing or
-- '=' and the text; size is the length of the first. Returns round, value, earlier.
local function unmemo(entry)
  local round, size, at = string.match(entry, '^(%d+)\t(%d+)\t()')
  local cut = at + tonumber(size)
  return tonumber(round), string.sub(entry, at, cut - 1), string.sub(entry, cut)
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

local function append(list, ...)
  for _, value in ipairs({...}) do list[#list + 1] = value end
end

-- Lua unpacks at most ~8000 values into one call: long lists go in slices.
local SLICE = 1000

-- Run `command key ...list`, in slices of whole `width`-value groups (field, value pairs).
local function call_all(command, key, list, width)
  local step = SLICE * (width or 1)
  for first = 1, #list, step do
    redis.call(command, key, unpack(list, first, math.min(first + step - 1, #list)))
  end
end

local function hmget(key, fields)
  local values = {}
  for first = 1, #fields, SLICE do
    local last = math.min(first + SLICE - 1, #fields)
    for _, value in ipairs(redis.call('HMGET', key, unpack(fields, first, last))) do
      values[#values + 1] = value
    end
  end
  return values
end

-- The hosts a script meets, each read with one HMGET and written back by flush(): a
-- claim or settle of many requests of one host touches its hash twice, not per request.
-- A field is a string as read, a number once set, false if absent (or to delete it).
local HOST_FIELDS = {'entry', 'inflight', 'conc', 'next', 'last', 'delay', 'delay0',
                     'interval'}
local hosts, host_changed, host_totals = {}, {}, {}

local function host_state(host)
  local h = hosts[host]
  if not h then
    h = {}
    local values = redis.call('HMGET', host_key(host), unpack(HOST_FIELDS))
    for i, field in ipairs(HOST_FIELDS) do h[field] = values[i] end
    hosts[host], host_changed[host], host_totals[host] = h, {}, {}
  end
  return h
end

local function set_field(host, field, value)
  host_state(host)[field] = value
  host_changed[host][field] = true
end

-- Add to a host's total that no script reads back: done, failed, delayed.
local function add_to(host, field, by)
  host_state(host)
  host_totals[host][field] = (host_totals[host][field] or 0) + by
end

local function flush_host(host)
  local key, h, set, gone = host_key(host), hosts[host], {}, {}
  for field in pairs(host_changed[host]) do
    if h[field] then
      append(set, field, h[field])
    else
      gone[#gone + 1] = field
    end
  end
  if #set > 0 then redis.call('HSET', key, unpack(set)) end
  if #gone > 0 then redis.call('HDEL', key, unpack(gone)) end
  for field, by in pairs(host_totals[host]) do
    if by ~= 0 then redis.call('HINCRBY', key, field, by) end
  end
  host_changed[host], host_totals[host] = {}, {}
end

-- New requests' records (id, record, id, record...), stored together by flush().
local stored = {}

local function flush()
  for field, by in pairs(changed) do
    if by ~= 0 then redis.call('HINCRBY', META, field, by) end
  end
  changed = {}
  for host in pairs(hosts) do flush_host(host) end
  call_all('HSET', REQ, stored, 2)
  stored = {}
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

-- The host's limits come from the project file, the same for every worker: stored when
-- the host is first met (or a project changed them).
local function set_policy(host, concurrency, delay, interval)
  local h = host_state(host)
  if not h.conc then redis.call('SADD', HOSTS, host) end
  if h.conc ~= concurrency then set_field(host, 'conc', concurrency) end
  if h.delay0 ~= delay then set_field(host, 'delay0', delay) end
  if h.interval ~= interval then set_field(host, 'interval', interval) end
end

-- When the host may start again after a start at `start`: its delay (tuned, else
-- configured) jittered by 0.5-1.5x, or its rate's interval if that is longer, moved to
-- the nearest wave of its delay that the policy allows (in_waves in
-- framework/fetch/politeness.py says why). A start within a wave of the host's turn
-- counts the delay from the turn, as Hosts._next_start in framework/frontier/hosts.py
-- does, and says why.
local function next_start(host, start, jitter)
  local h = host_state(host)
  local delay, interval = tonumber(h.delay) or num(h.delay0), num(h.interval)
  if delay <= 0 then return start + interval end  -- a rate alone is kept exactly
  local _, exponent = math.frexp(delay)
  local wave = 2 ^ (exponent - 3)  -- 1/8 to 1/4 of the delay
  if wave == 0 then return start + math.max(delay * (0.5 + jitter), interval) end
  local turn, since = tonumber(h.next), start
  if turn and start >= turn and start - turn < wave then since = turn end
  local at = since + math.max(delay * (0.5 + jitter), interval)
  local earliest = start + math.max(delay / 2, interval)
  return math.max(math.floor(at / wave + 0.5), math.ceil(earliest / wave)) * wave
end

-- Put the host where its next request will be found: READY (by the rank of its best
-- request, ties by filing order) if it may be visited now, WAITING (by when it may) if
-- it must rest, neither if it has nothing queued or all its slots are taken. A ready
-- host's rank is kept in its state for the script (not stored).
local function file(host, t)
  local h = host_state(host)
  if h.entry then  -- a host is in READY (with its entry) or in WAITING, never in both
    redis.call('ZREM', READY, h.entry)
  else
    redis.call('ZREM', WAITING, host)
  end
  local best = redis.call('ZRANGE', queue_key(host), 0, 0, 'WITHSCORES')
  local free = #best > 0 and num(h.inflight) < (tonumber(h.conc) or 1)
  if free and num(h.next) <= t then
    local entry = string.format('%012d', next_of('filed')) .. host
    redis.call('ZADD', READY, best[2], entry)
    set_field(host, 'entry', entry)
    h.rank = tonumber(best[2])
    return
  end
  if h.entry then set_field(host, 'entry', false) end
  if free then redis.call('ZADD', WAITING, h.next, host) end
end

-- One of the host's requests is no longer in flight. A host that is ready already stays
-- where it is; one whose slots were all taken may be filed now.
local function release(host, t)
  local h = host_state(host)
  set_field(host, 'inflight', num(h.inflight) - 1)
  if not h.entry then
    file(host, t)
  end
end

-- Queue a stored request in its host's queue: highest priority first, then oldest id.
local function enqueue(id, host, priority, t)
  redis.call('ZADD', queue_key(host), -priority, id)
  bump('pending', 1)
  local h = host_state(host)
  if h.entry then  -- a ready host keeps its place, moving up if this request outranks it
    h.rank = h.rank or num(redis.call('ZSCORE', READY, h.entry))
    if -priority < h.rank then
      redis.call('ZADD', READY, -priority, h.entry)
      h.rank = -priority
    end
  elseif not redis.call('ZSCORE', WAITING, host) then
    file(host, t)
  end
end

-- The id of the failed entry a ONCE key was queued as, now taken out of the failures to be
-- queued again; nil if it is queued, leased or done (a killed retry's rerun resumes it).
local function reopened(fp, host)
  local id = redis.call('HGET', ONCE, fp)
  if not id or redis.call('HDEL', FAILURES, id) == 0 then
    return nil
  end
  bump('failed', -1)
  add_to(host, 'failed', -1)
  return id
end

-- Take the failures of the request whose fingerprint is fp over for a retry of it (its
-- first entry): they are counted no more, so that the request counts once, as the retry
-- ends. Return how many there were: its own, and those of it sent again with dont_filter.
local function taken_over(fp, host)
  local ids = redis.call('HGET', FAILED_FP, fp)
  if not ids then return 0 end
  redis.call('HDEL', FAILED_FP, fp)
  local n = 0
  for id in string.gmatch(ids, '[^,]+') do
    n = n + redis.call('HDEL', FAILURES, id)
  end
  bump('failed', -n)
  add_to(host, 'failed', -n)
  return n
end

-- Queue the requests in ARGV[from] to ARGV[last] whose fingerprint is new; return their
-- positions among them. Each is one argument (one is far cheaper to send than eight):
-- fingerprint shard, fingerprint, host, priority, the host's concurrency, delay and
-- interval, separated by tabs, then the JSON, which has no raw tab. An empty fingerprint
-- (dont_filter) is never a duplicate; a shard starting with 'o' marks a ONCE key, whose
-- failed entry is queued again, and after a ':' the fingerprint of the request it
-- retries, whose failure its first entry takes over.
local REQUEST = '^([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t()'

local function push(from, last, t)
  local new, again = {}, 0
  for i = from, last do
    local shard, fp, host, priority, conc, delay, interval, at = string.match(ARGV[i], REQUEST)
    local once = string.sub(shard, 1, 1) == 'o'
    local retried = ''
    if once then shard, retried = string.match(shard, '^o([^:]*):?(.*)$') end
    local id
    if fp == '' or redis.call('SADD', SEEN .. shard, fp) == 1 then
      id = string.format('%012d', next_of('seq'))
      if once then redis.call('HSET', ONCE, fp, id) end
    elseif once then
      id = reopened(fp, host)
      if id then again = again + 1 end
    end
    if id and retried ~= '' then  -- a retry queued: it takes over what failed before
      again = again + taken_over(retried, host)
    end
    if id then
      priority = tonumber(priority)
      set_policy(host, conc, delay, interval)
      append(stored, id, record(host, priority, string.sub(ARGV[i], at)))
      enqueue(id, host, priority, t)
      new[#new + 1] = i - from + 1
    end
  end
  bump('seen', #new - again)
  return new
end

-- Return a leased request to its host's queue (its lease expired, or its worker stopped).
local function requeue(id, t)
  redis.call('ZREM', LEASES, id)
  redis.call('HDEL', TOKENS, id)
  local host, priority = unrecord(redis.call('HGET', REQ, id))
  set_field(host, 'inflight', num(host_state(host).inflight) - 1)
  enqueue(id, host, priority, t)
end
