-- Change a host's pace for every worker: its delay from now on and/or a pause.
-- ARGV: prefix, epoch, host, delay ('' keeps it), pause seconds, jitter, and the host's
-- configured concurrency, delay and interval.
if gone() then return GONE end
local host, delay, pause, jitter = ARGV[3], ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6])
local t = now()
set_policy(host, ARGV[7], ARGV[8], ARGV[9])
local h = host_state(host)
local next_at = num(h.next)
if delay ~= '' then  -- the new delay counts from the last start, not only from the next
  set_field(host, 'delay', delay)
  if h.last then next_at = math.max(next_at, next_start(host, tonumber(h.last), jitter)) end
end
if pause > 0 then
  next_at = math.max(next_at, t + pause)
end
set_field(host, 'next', next_at)
file(host, t)
flush()
return 1
