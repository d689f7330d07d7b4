-- Read the crawl's state for `fw status`, as one consistent snapshot; changes nothing.
-- ARGV: prefix. Returns {server time, 1 if the crawl exists else 0, counts, per host
-- (name, pending, leased, done, failed)..., per worker (id, heartbeat[ stopped])...}.
local hosts = {}
for _, host in ipairs(redis.call('SMEMBERS', HOSTS)) do
  local s = redis.call('HMGET', host_key(host), 'delayed', 'inflight', 'done', 'failed')
  local pending = redis.call('ZCARD', queue_key(host)) + num(s[1])
  append(hosts, host, pending, num(s[2]), num(s[3]), num(s[4]))
end
local exists = redis.call('EXISTS', META)
return {tostring(now()), exists, counts(), hosts, redis.call('HGETALL', WORKERS)}
