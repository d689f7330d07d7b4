-- Settle leases as done or failed and queue what their pages discovered, in one step.
-- ARGV: prefix, epoch, worker, call, then for each lease: one argument with its request
-- id, lease token, 'done' or 'failed', how many requests it discovered, the fingerprint a
-- failed request is kept under for a retry to take over (or nothing) and the reason,
-- separated by tabs; then those requests (see push in lib.lua).
-- Returns {answers, counts}: for each lease in order, joined by '|', the positions of its
-- new requests (comma-separated), or '!' when the token no longer holds the lease (it
-- expired and was returned to the queue).
if gone() then return GONE end
local worker, call = ARGV[3], ARGV[4]
local answer = recall(worker, call)
if answer then
  return {answer, counts()}
end
local t = now()

-- Read every lease's argument first, so that their tokens, records and keys are read and
-- deleted in a few calls for the whole batch, not a few per lease.
local leases, i = {}, 5
while i <= #ARGV do
  local id, token, outcome, found, fp, reason =
    string.match(ARGV[i], '^([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$')
  local last = i + tonumber(found)
  leases[#leases + 1] = {id = id, token = token, outcome = outcome, fp = fp,
                         reason = reason, from = i + 1, last = last}
  i = last + 1
end

local ids, held, taken = {}, {}, {}
for n, lease in ipairs(leases) do ids[n] = lease.id end
for n, token in ipairs(hmget(TOKENS, ids)) do
  local lease = leases[n]
  if token == lease.token and not taken[lease.id] then  -- else it expired: '!'
    taken[lease.id] = true
    held[#held + 1] = lease
  end
end
ids = {}
for n, lease in ipairs(held) do ids[n] = lease.id end
for n, value in ipairs(hmget(REQ, ids)) do held[n].record = value end
call_all('ZREM', LEASES, ids)
call_all('HDEL', TOKENS, ids)
call_all('HDEL', REQ, ids)

local function settle(lease)
  local host, _, json = unrecord(lease.record)
  bump(lease.outcome, 1)
  add_to(host, lease.outcome, 1)
  if lease.outcome == 'failed' then  -- kept for the record: why, and the request itself
    redis.call('HSET', FAILURES, lease.id, lease.reason .. '\n' .. json)
    if lease.fp ~= '' then  -- every failure of the request: sent again, it fails anew
      local ids = redis.call('HGET', FAILED_FP, lease.fp)
      redis.call('HSET', FAILED_FP, lease.fp, ids and ids .. ',' .. lease.id or lease.id)
    end
  end
  release(host, t)
  return table.concat(push(lease.from, lease.last, t), ',')
end

local answers = {}
for n, lease in ipairs(leases) do
  answers[n] = lease.record and settle(lease) or '!'
end
answer = table.concat(answers, '|')
remember(worker, call, answer)
return {answer, counts()}
