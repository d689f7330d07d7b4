-- Queue new requests, deduplicated by fingerprint against the whole crawl.
-- ARGV: prefix, epoch, worker, call, then one argument per request (see push in lib.lua).
-- Returns the positions of the requests that were new, comma-separated, and the counts.
if gone() then return GONE end
local worker, call = ARGV[3], ARGV[4]
local answer = recall(worker, call)
if not answer then
  answer = table.concat(push(5, #ARGV, now()), ',')
  remember(worker, call, answer)
end
return {answer, counts()}
