-- The heartbeat: say the worker is alive, and extend the leases it still holds.
-- ARGV: prefix, worker, lease seconds, then (request id, lease token) pairs.
-- Returns how many leases were extended; a lease given to another worker is left alone.
local t = now()
redis.call('HSET', WORKERS, ARGV[2], t)
-- A worker that died leaves its call record behind; it goes a day after the last beat.
redis.call('EXPIRE', P .. 'calls:' .. ARGV[2], 86400)
local expiry, kept = t + tonumber(ARGV[3]), 0
for i = 4, #ARGV, 2 do
  if redis.call('HGET', TOKENS, ARGV[i]) == ARGV[i + 1] then
    redis.call('ZADD', LEASES, expiry, ARGV[i])
    kept = kept + 1
  end
end
return kept
