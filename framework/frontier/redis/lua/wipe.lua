-- Delete the crawl's keys for `fw run --fresh`, one SCAN page a call, under a mark in meta.
-- ARGV: prefix, this wipe's token, the SCAN cursor ('' to begin), the MATCH pattern of the
-- crawl's keys. Returns the next cursor ('0' once every key is gone), or 'taken' if the
-- mark is not this wipe's any more (another --fresh took it over, or Redis was flushed).
--
-- The mark is a meta hash of `wiping` (the token) and `beat` (its last progress) alone.
-- It has no epoch, so the old crawl's workers find their crawl gone and write nothing, and
-- open.lua creates no crawl under it but waits: no key appears under the prefix while the
-- scan runs, so SCAN misses none. open.lua lifts the mark and creates the new crawl in one
-- step, once the wipe is over.
local token, cursor = ARGV[2], ARGV[3]
if cursor == '' then
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
  if key ~= META then doomed[#doomed + 1] = key end
end
if #doomed > 0 then redis.call('UNLINK', unpack(doomed)) end
return page[1]
