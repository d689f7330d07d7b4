-- Queue new requests, deduplicated by fingerprint against the whole crawl.
-- ARGV: prefix, worker, call, then one argument per request (see push in lib.lua).
-- Returns the positions of the requests that were new, comma-separated, and the counts.
local worker, call = ARGV[2], ARGV[3]
local answer = recall(worker, call)
if not answer then
  answer = table.concat(push(4, #ARGV, now()), ',')
  remember(worker, call, answer)
end
return {answer, counts()}
