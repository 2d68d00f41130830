/**
 * The Redis store's scripts. Each runs atomically inside Redis, so a reservation across several
 * budgets, rate limits and a loop check is all-or-nothing even with many Signalbox replicas.
 * They mirror MemoryStore step for step; the shared store tests hold them to the same results.
 *
 * Amounts are integers below 2^53 (a 9e9 USD limit is 9e15 micro-USD), exact in Lua's doubles;
 * they are formatted with %.0f before HINCRBY so large values never turn into exponent notation,
 * and returned as such strings too: cjson writes numbers with 14 significant digits, which
 * would round a balance above 1e14 micro-USD (100 million USD).
 */

/** Sweeps the expired holds of one budget counter (hash + sorted set). */
const SWEEP = `
local function int(x) return string.format('%.0f', x) end
local function sweep(bk, zk, now, charge)
  local ids = redis.call('ZRANGEBYSCORE', zk, '-inf', now)
  for _, id in ipairs(ids) do
    local amount = tonumber(redis.call('HGET', bk, 'h:' .. id) or '0')
    redis.call('HDEL', bk, 'h:' .. id)
    redis.call('HINCRBY', bk, 'held', int(-amount))
    if charge then redis.call('HINCRBY', bk, 'spent', int(amount)) end
    redis.call('ZREM', zk, id)
  end
end
-- Takes a hold that has not expired off one budget counter (settle and cancel): true when it
-- did, false when the hold expired (the caller applies the expired-hold policy), nil when the
-- counter itself is gone.
local function release_live_hold(bk, zk, id, now)
  if redis.call('EXISTS', bk) ~= 1 then return nil end
  local score = redis.call('ZSCORE', zk, id)
  if not (score and tonumber(score) > now) then return false end
  local amount = tonumber(redis.call('HGET', bk, 'h:' .. id) or '0')
  redis.call('HDEL', bk, 'h:' .. id)
  redis.call('ZREM', zk, id)
  redis.call('HINCRBY', bk, 'held', int(-amount))
  return true
end
-- Lifetimes are set relative to the caller's "now", never as an absolute time: an absolute
-- PEXPIREAT would be judged by Redis's own clock, so a replica whose clock is behind Redis's
-- (or a test's frozen clock) would write counters that are already expired, and a budget would
-- never fill. A key's lifetime only ever grows, so a replica with a slower clock cannot cut
-- short the lifetime another replica gave it. PTTL is -1 for a key with no expiry yet.
local function extend(key, ttl)
  local current = redis.call('PTTL', key)
  if current < 0 or current < ttl then redis.call('PEXPIRE', key, int(ttl)) end
end
-- A rate limit is a bucket of one minute's capacity, kept as 'level:at': the units in use at
-- time 'at', draining at per_minute a minute (the GCRA's theoretical arrival time is
-- at + level * 60000 / per_minute). Kept this way rather than as that time, the numbers stay
-- as small as the limit: an epoch time in ms as a double has a resolution of about 0.25 us,
-- coarser than one token of a 1e12 tokens-a-minute limit, while a level up to 1e12 is exact to
-- about 1e-4 of a unit. Returns the level drained to now, and the time it is at (never earlier
-- than before: a replica whose clock is behind does not refill a bucket). nil: no such
-- bucket, or one written in another format.
local function bucket(rk, now, per_minute)
  local raw = redis.call('GET', rk)
  if not raw then return 0, now end
  local sep = string.find(raw, ':', 1, true)
  if not sep then return nil end
  local level, at = tonumber(string.sub(raw, 1, sep - 1)), tonumber(string.sub(raw, sep + 1))
  if now > at then
    level = math.max(0, level - (now - at) * per_minute / 60000)
    at = now
  end
  return level, at
end
-- Stores a bucket for as long as it takes to drain, plus a minute.
local function put_bucket(rk, level, at, now, per_minute)
  redis.call('SET', rk, string.format('%.17g:%.0f', level, at), 'PX', math.ceil(at - now + level * 60000 / per_minute) + 60000)
end
-- A balance as returned to the caller: amounts as exact integer strings (see the file comment).
local function wire(b)
  return { spent = int(b.spent), held = int(b.held), limit = int(b.limit), holds = b.holds }
end
local function balance(bk, zk)
  local v = redis.call('HMGET', bk, 'spent', 'held', 'limit')
  return { spent = tonumber(v[1] or '0'), held = tonumber(v[2] or '0'), limit = tonumber(v[3] or '0'), holds = redis.call('ZCARD', zk) }
end
`;

/**
 * KEYS: hold record, then (budget hash, holds zset) per budget, then one key per rate limit,
 * then the loop list when there is a loop check.
 * ARGV[1]: JSON { id, now, amount, charge, hold_ttl, retention, budgets: [{scope, window, slot,
 * limit, expire_at}], rates: [{per_minute, weight, unit}], loop: {hash, max_repeats, ping_pong,
 * window, ttl} | null, meta }. Every time is on the caller's clock: a budget counter lives for
 * (expire_at - now) ms as Redis counts time, whatever Redis's own clock reads.
 */
export const RESERVE_SCRIPT = `${SWEEP}
local p = cjson.decode(ARGV[1])
local now = p.now
if redis.call('EXISTS', KEYS[1]) == 1 then return cjson.encode({ outcome = 'duplicate' }) end
local nb = #p.budgets
local nr = #p.rates
local balances = {}
for i = 1, nb do
  local bk, zk = KEYS[2 * i], KEYS[2 * i + 1]
  sweep(bk, zk, now, p.charge)
  balances[i] = balance(bk, zk)
end

local lk = KEYS[2 * nb + nr + 2]
if p.loop ~= cjson.null and p.loop ~= nil then
  local history = redis.call('LRANGE', lk, 0, p.loop.window - 1)
  local call = p.loop.hash
  if p.loop.max_repeats > 0 then
    local seen = 0
    for _, h in ipairs(history) do if h == call then seen = seen + 1 end end
    if seen >= p.loop.max_repeats then
      return cjson.encode({ outcome = 'loop_detected', reason = 'repeated_call', count = seen + 1 })
    end
  end
  if p.loop.ping_pong > 0 then
    local needed = 2 * p.loop.ping_pong - 1
    local other = history[1]
    if #history >= needed and other ~= call then
      local alternates = true
      for i = 1, needed do
        local expected = call
        if i % 2 == 1 then expected = other end
        if history[i] ~= expected then alternates = false break end
      end
      if alternates then
        return cjson.encode({ outcome = 'loop_detected', reason = 'ping_pong', count = p.loop.ping_pong })
      end
    end
  end
end

for i = 1, nb do
  local b = balances[i]
  if b.spent + b.held + p.amount > p.budgets[i].limit then
    return cjson.encode({ outcome = 'budget_exceeded', index = i, spent = int(b.spent), held = int(b.held), holds = b.holds })
  end
end

local levels = {}
local ats = {}
for j = 1, nr do
  local r = p.rates[j]
  local level, at = bucket(KEYS[2 * nb + 1 + j], now, r.per_minute)
  if level == nil then level, at = 0, now end
  local nxt = level + r.weight
  if nxt > r.per_minute then
    local retry = math.ceil((nxt - r.per_minute) * 60000 / r.per_minute + (at - now))
    if r.weight > r.per_minute then retry = -1 end
    return cjson.encode({ outcome = 'rate_limited', index = j, retry = retry })
  end
  levels[j] = nxt
  ats[j] = at
end

local hold_expires = now + p.hold_ttl
local budget_keys = {}
for i = 1, nb do
  local b = p.budgets[i]
  local bk, zk = KEYS[2 * i], KEYS[2 * i + 1]
  redis.call('HINCRBY', bk, 'held', int(p.amount))
  redis.call('HSET', bk, 'h:' .. p.id, int(p.amount), 'limit', int(b.limit), 'scope', b.scope, 'window', b.window, 'slot', b.slot)
  redis.call('ZADD', zk, hold_expires, p.id)
  local ttl = math.max(b.expire_at, hold_expires + p.retention) - now
  extend(bk, ttl)
  extend(zk, ttl)
  budget_keys[#budget_keys + 1] = { bk, zk }
  balances[i].held = balances[i].held + p.amount
  balances[i].holds = balances[i].holds + 1
  balances[i].limit = b.limit
end
local token_rates = {}
local all_rates = {}
for j = 1, nr do
  local r = p.rates[j]
  local rk = KEYS[2 * nb + 1 + j]
  put_bucket(rk, levels[j], ats[j], now, r.per_minute)
  if r.unit == 'tokens' then token_rates[#token_rates + 1] = { rk, r.weight, r.per_minute } end
  all_rates[#all_rates + 1] = { rk, r.weight, r.per_minute }
end
local loop_entry = {}
if p.loop ~= cjson.null and p.loop ~= nil then
  redis.call('LPUSH', lk, p.loop.hash)
  redis.call('LTRIM', lk, 0, p.loop.window - 1)
  redis.call('PEXPIRE', lk, p.loop.ttl)
  loop_entry = { lk, p.loop.hash }
end
-- rates and loop are what CANCEL_SCRIPT needs to give back a reservation the caller never saw.
redis.call('HSET', KEYS[1], 'state', 'held', 'amount', int(p.amount), 'budgets', cjson.encode(budget_keys),
  'token_buckets', cjson.encode(token_rates), 'rates', cjson.encode(all_rates), 'loop', cjson.encode(loop_entry),
  -- token_rates (the earlier [key, weight, interval] form) stays empty, so a replica of the
  -- earlier version settling this hold during a rolling upgrade refunds nothing rather than
  -- failing on a bucket it cannot read.
  'token_rates', '[]',
  'meta', cjson.encode(p.meta))
redis.call('PEXPIRE', KEYS[1], p.hold_ttl + p.retention)
local out = {}
for i = 1, nb do out[i] = wire(balances[i]) end
return cjson.encode({ outcome = 'reserved', balances = out })
`;

/**
 * KEYS: hold record, then the budget hash + zset pairs and token bucket keys the record names
 * (read from it first; they never change after the reservation).
 * ARGV[1]: JSON { id, now, amount, tokens (or -1), charge, retention }
 */
export const SETTLE_SCRIPT = `${SWEEP}
local p = cjson.decode(ARGV[1])
local now = p.now
local rec = redis.call('HMGET', KEYS[1], 'state', 'amount', 'budgets', 'token_buckets', 'settled')
if not rec[1] then return cjson.encode({ outcome = 'not_found' }) end
if rec[1] == 'settled' then return cjson.encode({ outcome = 'already_settled', amount = rec[5] }) end
-- A cancelled reservation was refused to its caller (see CANCEL_SCRIPT): there is nothing to settle.
if rec[1] == 'cancelled' then return cjson.encode({ outcome = 'not_found' }) end
local held = tonumber(rec[2])
local budgets = cjson.decode(rec[3])
local late = false
for i = 1, #budgets do
  local bk, zk = budgets[i][1], budgets[i][2]
  local released = release_live_hold(bk, zk, p.id, now)
  if released then
    redis.call('HINCRBY', bk, 'spent', int(p.amount))
  elseif released == false then
    sweep(bk, zk, now, p.charge)
    late = true
    local charged = 0
    if p.charge then charged = held end
    redis.call('HINCRBY', bk, 'spent', int(p.amount - charged))
  end
end
if p.tokens >= 0 then
  local rates = cjson.decode(rec[4] or '[]')
  for j = 1, #rates do
    local rk, weight, per_minute = rates[j][1], rates[j][2], rates[j][3]
    if p.tokens < weight and redis.call('EXISTS', rk) == 1 then
      local level, at = bucket(rk, now, per_minute)
      if level ~= nil then put_bucket(rk, math.max(0, level - (weight - p.tokens)), at, now, per_minute) end
    end
  end
end
redis.call('HSET', KEYS[1], 'state', 'settled', 'settled', int(p.amount))
redis.call('PEXPIRE', KEYS[1], p.retention)
return cjson.encode({ outcome = 'settled', held = int(held), late = late })
`;

/**
 * Gives back a reservation whose caller was answered 503 because its reply did not arrive in
 * time (a command timeout, a dropped connection): the script may have run anyway, and what it
 * took must not stay taken for a request that was refused.
 *
 * KEYS: hold record, then the budget hash + zset pairs, the rate keys and the loop list the
 * record names (read from it first, as for SETTLE_SCRIPT; none when there is no record).
 * ARGV[1]: JSON { id, now, charge, tombstone_ttl, retention, keys (how many KEYS the caller read) }
 *
 * - No record: the reservation never ran, or has not run yet (it may still be in flight on a
 *   stalled connection). Leave a `cancelled` tombstone for tombstone_ttl ms: RESERVE_SCRIPT
 *   refuses a hold id whose record exists, so a late reservation can no longer take anything.
 * - held: undo it. Each budget gets its hold back (or, when the hold already expired and was
 *   charged, the charge); each rate bucket gives back the units it took (never below empty); the loop history loses one copy of the call it recorded.
 * - settled or cancelled: nothing (idempotent, so a timed-out cancel can simply be sent again).
 * - `stale` when the record names more keys than the caller declared (it read the record before
 *   a late reservation wrote it): the caller reads again and retries.
 */
export const CANCEL_SCRIPT = `${SWEEP}
local p = cjson.decode(ARGV[1])
local now = p.now
local rec = redis.call('HMGET', KEYS[1], 'state', 'amount', 'budgets', 'rates', 'loop')
if not rec[1] then
  redis.call('HSET', KEYS[1], 'state', 'cancelled')
  redis.call('PEXPIRE', KEYS[1], int(p.tombstone_ttl))
  return cjson.encode({ outcome = 'tombstoned' })
end
if rec[1] ~= 'held' then return cjson.encode({ outcome = rec[1] }) end
local held = tonumber(rec[2])
local budgets = cjson.decode(rec[3])
local rates = cjson.decode(rec[4] or '[]')
local loop = cjson.decode(rec[5] or '[]')
local named = 1 + 2 * #budgets + #rates
if loop[1] then named = named + 1 end
if named ~= p.keys then return cjson.encode({ outcome = 'stale' }) end
for i = 1, #budgets do
  local bk, zk = budgets[i][1], budgets[i][2]
  if release_live_hold(bk, zk, p.id, now) == false then
    sweep(bk, zk, now, p.charge)
    if p.charge then redis.call('HINCRBY', bk, 'spent', int(-held)) end
  end
end
for j = 1, #rates do
  local rk, weight, per_minute = rates[j][1], rates[j][2], rates[j][3]
  if redis.call('EXISTS', rk) == 1 then
    local level, at = bucket(rk, now, per_minute)
    if level ~= nil then put_bucket(rk, math.max(0, level - weight), at, now, per_minute) end
  end
end
if loop[1] then redis.call('LREM', loop[1], 1, loop[2]) end
redis.call('HSET', KEYS[1], 'state', 'cancelled')
redis.call('PEXPIRE', KEYS[1], int(p.retention))
return cjson.encode({ outcome = 'cancelled' })
`;

/**
 * KEYS: (budget hash, holds zset) pairs. ARGV[1]: JSON { now, charge }.
 * Sweeps, then returns each counter's balance.
 */
export const BALANCES_SCRIPT = `${SWEEP}
local p = cjson.decode(ARGV[1])
local out = {}
for i = 1, #KEYS / 2 do
  local bk, zk = KEYS[2 * i - 1], KEYS[2 * i]
  sweep(bk, zk, p.now, p.charge)
  out[i] = wire(balance(bk, zk))
end
return cjson.encode(out)
`;

/**
 * Records one upstream call's outcome against a provider's circuit breaker: the Lua twin of
 * breakerStep (store.ts), which holds the rule and its documentation.
 *
 * KEYS[1]: the providers hash (field: provider name, value: the breaker as JSON with the
 * fields failures, window_end, opened_at, retry_at, last_failure, last_success; an absent
 * field is null).
 * ARGV[1]: JSON { provider, outcome ('success' | 'failure'), now, threshold, window, cool_down, max }
 * Returns JSON { outcome = 'recorded', previous = <state before>, breaker = <stored after> },
 * or { outcome = 'too_many' } when the provider is new and the hash already holds `max`.
 *
 * Timestamps are integers below 1e14, so cjson's 14 significant digits keep them exact.
 */
export const PROVIDER_SCRIPT = `
local p = cjson.decode(ARGV[1])
local now = p.now
local raw = redis.call('HGET', KEYS[1], p.provider)
local s
if raw then
  s = cjson.decode(raw)
else
  if redis.call('HLEN', KEYS[1]) >= p.max then return cjson.encode({ outcome = 'too_many' }) end
  s = { failures = 0 }
end
local state = 'closed'
if s.retry_at ~= nil then
  if now < s.retry_at then state = 'open' else state = 'half_open' end
end
local function later(at)
  if at == nil or at < now then return now end
  return at
end
if p.outcome == 'success' then
  s.last_success = later(s.last_success)
  if state ~= 'open' then
    s = { failures = 0, last_failure = s.last_failure, last_success = s.last_success }
  end
else
  s.last_failure = later(s.last_failure)
  if state == 'half_open' then
    s.failures = 1
    s.window_end = nil
    s.opened_at = now
    s.retry_at = now + p.cool_down
  elseif state == 'closed' then
    local in_window = s.failures > 0 and s.window_end ~= nil and now < s.window_end
    if in_window then
      s.failures = s.failures + 1
    else
      s.failures = 1
      s.window_end = now + p.window
    end
    if s.failures >= p.threshold then
      s.window_end = nil
      s.opened_at = now
      s.retry_at = now + p.cool_down
    end
  end
end
redis.call('HSET', KEYS[1], p.provider, cjson.encode(s))
return cjson.encode({ outcome = 'recorded', previous = state, breaker = s })
`;
