-- Change a host's pace for every worker: its delay from now on and/or a pause.
-- ARGV: prefix, host, delay ('' keeps it), pause seconds, jitter, and the host's
-- configured concurrency, delay and interval.
local host, delay, pause, jitter = ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local t = now()
set_policy(host, ARGV[6], ARGV[7], ARGV[8])
local key = host_key(host)
local s = redis.call('HMGET', key, 'next', 'last')
local next_at = num(s[1])
if delay ~= '' then  -- the new delay counts from the last start, not only from the next
  redis.call('HSET', key, 'delay', delay)
  if s[2] then next_at = math.max(next_at, tonumber(s[2]) + gap(host, jitter)) end
end
if pause > 0 then
  next_at = math.max(next_at, t + pause)
end
redis.call('HSET', key, 'next', next_at)
file(host, t)
flush()
return 1
