-- Delete the crawl's keys for `fw run --fresh`, one SCAN page a call, under a mark in meta.
-- ARGV: prefix, this wipe's token, the SCAN cursor ('' to begin), the MATCH pattern of the
-- crawl's keys, the project's name and spider ('' for none). Returns the next cursor ('0'
-- once every key is gone), 'taken' if the mark is not this wipe's any more (another --fresh
-- took it over, or Redis was flushed), or, before deleting anything, 'owner', the owning
-- project and its spider, newline-separated, if the crawl is another project's: --fresh
-- discards this project's crawl, never one it shares a name with by accident.
--
-- The mark is a meta hash of `wiping` (the token) and `beat` (its last progress) alone.
-- It has no epoch, so the old crawl's workers find their crawl gone and write nothing, and
-- open.lua creates no crawl under it but waits: no key appears under the prefix while the
-- scan runs, so SCAN misses none. open.lua lifts the mark and creates the new crawl in one
-- step, once the wipe is over.
local token, cursor = ARGV[2], ARGV[3]
if cursor == '' then
  local owner = redis.call('HMGET', META, 'project', 'spider')
  if ARGV[5] ~= '' and owner[1] and (owner[1] ~= ARGV[5] or owner[2] ~= ARGV[6]) then
    return 'owner\n' .. owner[1] .. '\n' .. (owner[2] or '')
  end
  cursor = '0'
elseif redis.call('HGET', META, 'wiping') ~= token then
  return 'taken'
end
-- Rewritten whole, a delete first: Redis refuses a script's writes for lack of memory only
-- until its first write, and a Redis that is full is one --fresh must be able to empty.
redis.call('DEL', META)
redis.call('HSET', META, 'wiping', token, 'beat', tostring(now()))
local page = redis.call('SCAN', cursor, 'MATCH', ARGV[4], 'COUNT', 1000)
local doomed = {}
for _, key in ipairs(page[2]) do
  if key ~= META and ours(key) then doomed[#doomed + 1] = key end
end
if #doomed > 0 then redis.call('UNLINK', unpack(doomed)) end
return page[1]
