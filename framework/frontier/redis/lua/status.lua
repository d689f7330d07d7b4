-- Read the crawl's state for `fw status`, as one consistent snapshot; changes nothing.
-- ARGV: prefix. Returns {server time, 1 if the crawl exists else 0, counts, per host
-- (name, pending, leased, done, failed)..., per worker (id, heartbeat[ stopped])..., and
-- the seconds since a wipe's last progress while `fw run --fresh` wipes it, else ''}.
local hosts = {}
for _, host in ipairs(redis.call('SMEMBERS', HOSTS)) do
  local s = redis.call('HMGET', host_key(host), 'delayed', 'inflight', 'done', 'failed')
  local pending = redis.call('ZCARD', queue_key(host)) + num(s[1])
  append(hosts, host, pending, num(s[2]), num(s[3]), num(s[4]))
end
local exists = redis.call('EXISTS', META)
local wiping = ''
if redis.call('HEXISTS', META, 'wiping') == 1 then
  wiping = tostring(now() - num(redis.call('HGET', META, 'beat')))
end
return {tostring(now()), exists, counts(), hosts, redis.call('HGETALL', WORKERS), wiping}
