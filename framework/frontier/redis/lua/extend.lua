-- The heartbeat: say the worker is alive, and extend the leases it still holds.
-- ARGV: prefix, epoch, worker, lease seconds, then (request id, lease token) pairs.
-- Returns how many leases were extended; a lease given to another worker is left alone.
if gone() then return GONE end
local t = now()
redis.call('HSET', WORKERS, ARGV[3], t)
local expiry, kept = t + tonumber(ARGV[4]), 0
for i = 5, #ARGV, 2 do
  if redis.call('HGET', TOKENS, ARGV[i]) == ARGV[i + 1] then
    redis.call('ZADD', LEASES, expiry, ARGV[i])
    kept = kept + 1
  end
end
return kept
