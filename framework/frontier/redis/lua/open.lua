-- Register a worker and say whether the crawl existed before it, and which crawl it is.
-- ARGV: prefix, the epoch the crawl gets if it has none yet, worker, the token of the wipe
-- this worker made ('' if none: see wipe.lua), the project's name, spider and allowed
-- domains (lib.lua's running_scope), and the seconds a running worker may be silent.
-- Returns {'open', 1 if the crawl existed else 0, the crawl's epoch, counts, its round,
-- the allowed domains it had if this worker changes them else ''}, or, changing nothing:
-- while another worker's `fw run --fresh` (or new round) wipes the crawl, {'wiping',
-- seconds since its last progress, '1' if it is a new round's}; if the crawl is another
-- project's, {'owner', its project, its spider}; if its running workers allow other
-- domains, {'scope', theirs}.
local t = now()
local wiping = redis.call('HGET', META, 'wiping')
if wiping and wiping ~= ARGV[4] then
  return {'wiping', tostring(t - num(redis.call('HGET', META, 'beat'))),
          redis.call('HGET', META, 'renew') or '0'}
end
if wiping then  -- this worker's wipe is over: lift the mark, the new crawl (or round) begins
  if redis.call('HGET', META, 'renew') == '1' then
    redis.call('HSET', MEMORY, 'round', current_round() + 1)
  end
  redis.call('DEL', META)
end
-- Whose crawl it is: a project of another name or spider must not continue it (with its
-- own credentials, outside its own allowed_domains). A crawl made before fw recorded
-- owners becomes the crawl of the first project that opens it.
-- A worker that names no project ('': fw's own tests, tools) neither checks nor records.
local owner = redis.call('HMGET', META, 'project', 'spider')
if ARGV[5] ~= '' and owner[1] and (owner[1] ~= ARGV[5] or owner[2] ~= ARGV[6]) then
  return {'owner', owner[1], owner[2] or ''}
end
local running = running_scope(ARGV[7], ARGV[3], tonumber(ARGV[8]))
if running then return {'scope', running} end
-- A crawl with this worker's epoch is one its own earlier call made (its answer was lost).
local existed = redis.call('HSETNX', META, 'created', t) == 0
  and redis.call('HGET', META, 'epoch') ~= ARGV[2]
redis.call('HSETNX', META, 'epoch', ARGV[2])  -- also for a crawl made before epochs were
if ARGV[5] ~= '' then redis.call('HSET', META, 'project', ARGV[5], 'spider', ARGV[6]) end
local scope = redis.call('HGET', META, 'scope')
local changed = (existed and scope and ARGV[7] ~= '' and scope ~= ARGV[7]) and scope or ''
if ARGV[7] ~= '' then redis.call('HSET', META, 'scope', ARGV[7]) end
local workers = redis.call('HGETALL', WORKERS)
for i = 1, #workers, 2 do  -- forget workers silent for over a day, stopped or dead
  if t - tonumber(string.match(workers[i + 1], '^%S+')) > 86400 then
    redis.call('HDEL', WORKERS, workers[i])
    redis.call('DEL', P .. 'calls:' .. workers[i])
  end
end
redis.call('HSET', WORKERS, ARGV[3], t)
return {'open', existed and 1 or 0, redis.call('HGET', META, 'epoch'), counts(),
        current_round(), changed}
