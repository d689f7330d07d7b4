-- Register a worker and say whether the crawl existed before it.
-- ARGV: prefix, worker. Returns {1 if the crawl existed else 0, counts}.
local t = now()
local existed = redis.call('HSETNX', META, 'created', t) == 0
local workers = redis.call('HGETALL', WORKERS)
for i = 1, #workers, 2 do  -- forget workers that stopped over a day ago
  local stopped_at = string.match(workers[i + 1], '^(%S+) stopped$')
  if stopped_at and t - tonumber(stopped_at) > 86400 then
    redis.call('HDEL', WORKERS, workers[i])
  end
end
redis.call('HSET', WORKERS, ARGV[2], t)
return {existed and 1 or 0, counts()}
