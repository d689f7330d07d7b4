-- Delete the crawl's keys for `fw run --fresh`, one SCAN page a call, under a mark in meta;
-- or for a new round of a finished crawl, every key but its memory.
-- ARGV: prefix, this wipe's token, the SCAN cursor ('' to begin), the MATCH pattern of the
-- crawl's keys, the project's name and spider ('' for none), its allowed domains and the
-- seconds a running worker may be silent (lib.lua's running_scope), the epoch of the
-- finished crawl a new round renews ('' for any crawl), '1' to keep the memory (a new
-- round) else '0', and the wiping worker. Returns the next cursor ('0' once every key is
-- gone), 'taken' if the mark is not this wipe's any more (another --fresh took it over, or
-- Redis was flushed) or if the crawl to renew is not there any more (another worker renews
-- it, or has), or, before deleting anything: 'owner', the owning project and its spider,
-- newline-separated, if the crawl is another project's; 'scope' and the allowed domains of
-- the workers running it, if they are not this project's. --fresh (or a new round)
-- discards this project's crawl, never one it shares a name with by accident.
--
-- The mark is a meta hash of `wiping` (the token), `beat` (its last progress), `renew`
-- ('1' for a new round, which open.lua then counts) and the owner's `project` and `spider`
-- (so that a wipe left half done is taken over by its own project only) alone.
-- It has no epoch, so the old crawl's workers find their crawl gone and write nothing, and
-- open.lua creates no crawl under it but waits: no key appears under the prefix while the
-- scan runs, so SCAN misses none. open.lua lifts the mark and creates the new crawl in one
-- step, once the wipe is over.
local token, cursor, keep = ARGV[2], ARGV[3], ARGV[10] == '1'
local owner = redis.call('HMGET', META, 'project', 'spider')
if cursor == '' then
  if ARGV[5] ~= '' and owner[1] and (owner[1] ~= ARGV[5] or owner[2] ~= ARGV[6]) then
    return 'owner\n' .. owner[1] .. '\n' .. (owner[2] or '')
  end
  local running = running_scope(ARGV[7], ARGV[11], tonumber(ARGV[8]))
  if running then return 'scope\n' .. running end
  cursor = '0'
  if ARGV[9] ~= '' and redis.call('HGET', META, 'epoch') ~= ARGV[9] then
    return 'taken'
  end
elseif redis.call('HGET', META, 'wiping') ~= token then
  return 'taken'
end
-- Rewritten whole, a delete first: Redis refuses a script's writes for lack of memory only
-- until its first write, and a Redis that is full is one --fresh must be able to empty.
redis.call('DEL', META)
redis.call('HSET', META, 'wiping', token, 'beat', tostring(now()), 'renew', ARGV[10])
if owner[1] then
  redis.call('HSET', META, 'project', owner[1], 'spider', owner[2] or '')
end
local page = redis.call('SCAN', cursor, 'MATCH', ARGV[4], 'COUNT', 1000)
local doomed = {}
for _, key in ipairs(page[2]) do
  if key ~= META and ours(key) and not (keep and key == MEMORY) then
    doomed[#doomed + 1] = key
  end
end
if #doomed > 0 then redis.call('UNLINK', unpack(doomed)) end
return page[1]
