"""The Redis side of the shared limiter: two Lua scripts, each one atomic round trip.

Algorithm: requests and tokens per minute are a sliding window log. Each admission is a member
``<reservation id>|<tokens>`` of a sorted set, scored by the Redis server's clock (TIME, in
microseconds, so instances with skewed clocks agree); members older than the window are trimmed
before counting, and the tokens of the members in the window are kept as a sum beside the log,
so a check is O(1) amortised (every member is added once and trimmed once). Because the check
and the charge happen in one script, which Redis runs alone, no two instances can both take
the last slot; and since every sliding 60 s window is bounded, so is every fixed minute:
admissions per window never exceed the limit, and with enough demand they reach it exactly.
GCRA or a token bucket would need O(1) memory instead of O(admissions per minute), but they
let a burst of `limit` be followed at once by refilled capacity: up to twice the limit in some
60 s window, the over-admission this limiter exists to prevent.

Concurrency slots are members of a sorted set scored by their lease's expiry; the holder renews
them while the request runs, and a crashed holder's slots expire after the lease TTL. Budgets
are counters per UTC day and month.

Keys per scope ``<keyspace><scope id>`` (a scope is ``t:<tenant id>`` or ``k:<key id>``):
``:l`` the log, ``:h`` a hash with ``s`` (the log's token sum), ``d:<yyyymmdd>`` and
``m:<yyyymm>`` (budgets used), ``:c`` the leases. The keyspace is ``<prefix>rl:``, and on a
Redis Cluster ``<prefix>rl:{<tenant id>}:``: the hash tag puts the tenant's scope and its keys'
scopes in one slot. Every call names its keyspace as its one key (KEYS[1]), and the scripts
build every name they touch from it, so each call stays within the slot that Cluster checked
before running it.

RESERVE first applies the settlements this instance has queued (so they ride along with the
next request instead of costing a round trip of their own), then checks every limit of every
scope, then charges all of them or none. SETTLE applies a batch of settlements alone (when no
request came along soon enough to carry them) and RENEW extends leases. A settlement replaces
the reservation's estimate in the log and the budgets with the tokens used and frees its
slots; a request that outlives the window keeps its estimate there (budgets still get the
real count). Each batch of settlements carries a marker key set once, so a batch sent again
after an unanswered attempt is applied at most once.
"""

from __future__ import annotations

# ARGV[1]: keyspace, ARGV[2]: window (us). Limits travel as "rpm,tpm,concurrent,day,month"
# with -1 for "not limited".
_COMMON = """
local keyspace = ARGV[1]
local window = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local cutoff = now - window
local window_ms = math.floor(window / 1000)

local function limits_of(csv)
  local rpm, tpm, conc, day, month = string.match(csv, '^(-?%d+),(-?%d+),(-?%d+),(-?%d+),(-?%d+)$')
  return tonumber(rpm), tonumber(tpm), tonumber(conc), tonumber(day), tonumber(month)
end

-- Applies the batch of settlements that starts at ARGV[a]: marker key, count, then for each
-- settlement: reservation id, admission time (us), tokens reserved, tokens used, day, month,
-- scope count, and (scope id, limits) per scope.
local function settle_batch(a)
  local marker, count = ARGV[a], tonumber(ARGV[a + 1])
  a = a + 2
  if count == 0 or not redis.call('SET', marker, 1, 'NX', 'PX', 600000) then
    return
  end
  for _ = 1, count do
    local id, admitted, reserved, used = ARGV[a], tonumber(ARGV[a + 1]), ARGV[a + 2], ARGV[a + 3]
    local day_field, month_field = 'd:' .. ARGV[a + 4], 'm:' .. ARGV[a + 5]
    local scopes = tonumber(ARGV[a + 6])
    local delta = tonumber(used) - tonumber(reserved)
    a = a + 7
    for _ = 1, scopes do
      local base = keyspace .. ARGV[a]
      local rpm, tpm, conc, per_day, per_month = limits_of(ARGV[a + 1])
      a = a + 2
      if delta ~= 0 then
        -- in the window, the reservation now weighs what was used; out of it, nothing moves
        if (rpm >= 0 or tpm >= 0) and admitted > cutoff
            and redis.call('ZREM', base .. ':l', id .. '|' .. reserved) == 1 then
          redis.call('ZADD', base .. ':l', admitted, id .. '|' .. used)
          redis.call('HINCRBY', base .. ':h', 's', delta)
        end
        if per_day >= 0 then redis.call('HINCRBY', base .. ':h', day_field, delta) end
        if per_month >= 0 then redis.call('HINCRBY', base .. ':h', month_field, delta) end
      end
      if conc >= 0 then
        redis.call('ZREM', base .. ':c', id)
      end
    end
  end
end
"""

RESERVE = (
    _COMMON
    + """
-- ARGV: keyspace, window (us), lease TTL (us), budget expiry (unix s), day, month, reservation
--       id, tokens, scope count, (scope id, limits) per scope, then a settlement batch
-- Reply: {1, requests limit, remaining, reset (us), tokens limit, remaining, reset (us),
--        admission time (us), spare}
--        where spare is how many more requests of this size every limit of every scope
--        would still admit (2^31 - 1 when no limit counts requests or tokens that way)
--        (limit -1: no such limit), or {0, scope number (1-based), kind, limit, used, retry (us)}
--        with retry -1 when waiting cannot help (concurrency and budget retries are the
--        caller's to work out)
local ttl, budget_expiry = tonumber(ARGV[3]), ARGV[4]
local day_field, month_field = 'd:' .. ARGV[5], 'm:' .. ARGV[6]
local id, need_text = ARGV[7], ARGV[8]
local need, scopes = tonumber(need_text), tonumber(ARGV[9])
settle_batch(10 + scopes * 2)

local function weight(member)
  return tonumber(string.match(member, '|(%d+)$'))
end

local function tokens_free_at(log, excess)
  local freed, start = 0, 0
  while true do
    local batch = redis.call('ZRANGE', log, start, start + 99, 'WITHSCORES')
    if #batch == 0 then
      return now + window
    end
    for i = 1, #batch, 2 do
      freed = freed + weight(batch[i])
      if freed >= excess then
        return tonumber(batch[i + 1]) + window
      end
    end
    start = start + 100
  end
end

local function oldest(log)
  return tonumber(redis.call('ZRANGE', log, 0, 0, 'WITHSCORES')[2])
end

local checked, trimmed = {}, {}
local function refuse(s, kind, limit, used, retry)
  for _, t in ipairs(trimmed) do
    redis.call('HSET', t[1], 's', t[2])
  end
  return {0, s, kind, limit, used, retry}
end

for s = 1, scopes do
  local a = 8 + s * 2
  local c = {base = keyspace .. ARGV[a]}
  c.rpm, c.tpm, c.conc, c.per_day, c.per_month = limits_of(ARGV[a + 1])
  c.h = c.base .. ':h'
  local fields = redis.call('HMGET', c.h, 's', day_field, month_field)
  if c.rpm >= 0 or c.tpm >= 0 then
    c.log = c.base .. ':l'
    local stored = tonumber(fields[1] or '0')
    local sum = stored
    local expired = redis.call('ZRANGEBYSCORE', c.log, '-inf', cutoff)
    if #expired > 0 then
      for i = 1, #expired do
        sum = sum - weight(expired[i])
      end
      redis.call('ZREMRANGEBYSCORE', c.log, '-inf', cutoff)
    end
    c.count = redis.call('ZCARD', c.log)
    if c.count == 0 then
      sum = 0  -- the log expired as a whole: nothing is in the window
    end
    c.sum = sum
    if sum ~= stored then
      trimmed[#trimmed + 1] = {c.h, sum}
    end
    if c.rpm >= 0 and c.count + 1 > c.rpm then
      local retry = -1
      if c.rpm > 0 then retry = oldest(c.log) + window - now end
      return refuse(s, 1, c.rpm, c.count, retry)
    end
    if c.tpm >= 0 and sum + need > c.tpm then
      local retry = -1
      if need <= c.tpm then retry = tokens_free_at(c.log, sum + need - c.tpm) - now end
      return refuse(s, 2, c.tpm, sum, retry)
    end
  end
  if c.conc >= 0 then
    c.leases = c.base .. ':c'
    -- leases in force; RENEW removes the expired ones
    local held = redis.call('ZCOUNT', c.leases, string.format('(%.0f', now), '+inf')
    if held >= c.conc then
      return refuse(s, 3, c.conc, held, 0)
    end
    c.held = held
  end
  c.new_day = not fields[2]
  c.day_used, c.month_used = tonumber(fields[2] or '0'), tonumber(fields[3] or '0')
  if c.per_day >= 0 and c.day_used + need > c.per_day then
    return refuse(s, 4, c.per_day, c.day_used, 0)
  end
  if c.per_month >= 0 and c.month_used + need > c.per_month then
    return refuse(s, 5, c.per_month, c.month_used, 0)
  end
  checked[s] = c
end

local reply = {1, -1, 0, 0, -1, 0, 0, now, 2147483647}
local requests_log, tokens_log  -- the logs of the scopes with the least remaining
local per_request = math.max(need, 1)
local function spare(left, size)
  local more = math.floor(left / size)
  if more < reply[9] then reply[9] = more end
end
for s = 1, scopes do
  local c = checked[s]
  if c.rpm >= 0 then spare(c.rpm - c.count - 1, 1) end
  if c.tpm >= 0 then spare(c.tpm - c.sum - need, per_request) end
  if c.conc >= 0 then spare(c.conc - c.held - 1, 1) end
  if c.per_day >= 0 then spare(c.per_day - c.day_used - need, per_request) end
  if c.per_month >= 0 then spare(c.per_month - c.month_used - need, per_request) end
  local budgets = c.per_day >= 0 or c.per_month >= 0
  if c.log then
    redis.call('ZADD', c.log, now, id .. '|' .. need_text)
    redis.call('PEXPIRE', c.log, window_ms)
    if c.rpm >= 0 and (reply[2] < 0 or c.rpm - c.count - 1 < reply[3]) then
      reply[2], reply[3], requests_log = c.rpm, c.rpm - c.count - 1, c.log
    end
    if c.tpm >= 0 and (reply[5] < 0 or c.tpm - c.sum - need < reply[6]) then
      reply[5], reply[6], tokens_log = c.tpm, c.tpm - c.sum - need, c.log
    end
  end
  if c.log and budgets then
    redis.call('HSET', c.h, 's', c.sum + need, day_field, c.day_used + need,
      month_field, c.month_used + need)
  elseif c.log then
    redis.call('HSET', c.h, 's', c.sum + need)
  elseif budgets then
    redis.call('HSET', c.h, day_field, c.day_used + need, month_field, c.month_used + need)
  end
  if budgets and c.new_day then  -- the first charge of the day (or the hash is new)
    redis.call('EXPIREAT', c.h, budget_expiry)
  elseif not budgets and c.log then
    redis.call('PEXPIRE', c.h, window_ms)
  end
  if c.leases then
    redis.call('ZADD', c.leases, now + ttl, id)
    redis.call('PEXPIRE', c.leases, math.ceil(ttl / 1000))
  end
end
local oldest_in = {}
for _, log in ipairs({requests_log or false, tokens_log or false}) do
  if log and not oldest_in[log] then
    oldest_in[log] = oldest(log)
  end
end
if requests_log then
  reply[4] = oldest_in[requests_log] + window - now
end
if tokens_log then
  reply[7] = oldest_in[tokens_log] + window - now
end
return reply
"""
)

SETTLE = (
    _COMMON
    + """
-- ARGV: keyspace, window (us), then a settlement batch
settle_batch(3)
return 1
"""
)

RENEW = """
-- Extends leases still held (a lease already gone, expired or freed by a settlement, stays
-- gone) and drops expired ones.
-- ARGV: lease TTL (us), then per leases key (all in KEYS[1]'s keyspace): the key, a count,
--       the reservation ids
local clock = redis.call('TIME')
local ttl = tonumber(ARGV[1])
local expiry = tonumber(clock[1]) * 1000000 + tonumber(clock[2]) + ttl
local a = 2
while a <= #ARGV do
  local key, count = ARGV[a], tonumber(ARGV[a + 1])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', expiry - ttl)  -- leases of crashed holders
  for i = a + 2, a + 1 + count do
    redis.call('ZADD', key, 'XX', expiry, ARGV[i])
  end
  redis.call('PEXPIRE', key, math.ceil(ttl / 1000))
  a = a + 2 + count
end
return 1
"""
