-- Deregister a worker: return the leases it still holds to the queue, mark it stopped.
-- ARGV: prefix, epoch, worker, then (request id, lease token) pairs. Returns how many
-- went back.
if gone() then return GONE end
local worker, t, returned = ARGV[3], now(), 0
-- A delete first: Redis refuses a script's writes for lack of memory only until its first
-- write, and a worker must be able to stop (and hand its leases back) when Redis is full.
redis.call('DEL', P .. 'calls:' .. worker)
for i = 4, #ARGV, 2 do
  if redis.call('HGET', TOKENS, ARGV[i]) == ARGV[i + 1] then
    requeue(ARGV[i], t)
    returned = returned + 1
  end
end
flush()
redis.call('HSET', WORKERS, worker, t .. ' stopped')
return returned
