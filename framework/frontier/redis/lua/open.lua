-- Register a worker and say whether the crawl existed before it, and which crawl it is.
-- ARGV: prefix, the epoch the crawl gets if it has none yet, worker.
-- Returns {1 if the crawl existed else 0, the crawl's epoch, counts}.
local t = now()
local existed = redis.call('HSETNX', META, 'created', t) == 0
redis.call('HSETNX', META, 'epoch', ARGV[2])  -- also for a crawl made before epochs were
local workers = redis.call('HGETALL', WORKERS)
for i = 1, #workers, 2 do  -- forget workers that stopped over a day ago
  local stopped_at = string.match(workers[i + 1], '^(%S+) stopped$')
  if stopped_at and t - tonumber(stopped_at) > 86400 then
    redis.call('HDEL', WORKERS, workers[i])
  end
end
redis.call('HSET', WORKERS, ARGV[3], t)
return {existed and 1 or 0, redis.call('HGET', META, 'epoch'), counts()}
