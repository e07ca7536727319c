-- A lease: up to `want` permits of every limit of one request kind, taken atomically,
-- for the caller's process to hand out locally for at most `ttl_ms` (app/ratelimit/leases.py).
--
-- Exactness (docs/rate-limiting.md, "Leases"): a leased permit may be used at any moment
-- between now and now + ttl_ms. The grant is therefore CHECKED as if every permit were
-- used now (the earliest, strictest moment: max(TAT, now) + k * interval <= now + horizon)
-- and CHARGED as if every permit were used at now + ttl_ms (the latest moment:
-- TAT' = max(TAT, now + ttl_ms) + k * interval). Any schedule of the k uses inside the
-- lease is then a GCRA-conforming schedule, and the TAT every other caller sees is at
-- least the one that schedule would leave: the limiter never admits more than GCRA would.
-- A grant of one permit is used at once by the caller, like the per-request script: no
-- shift.
--
-- KEYS[1..n]   one key per limit (TAT in ms, string), as in gcra.lua
-- ARGV[1]      n
-- ARGV[2]      want: permits asked for (>= 1)
-- ARGV[3]      ttl_ms: how long the caller may hold them
-- then per limit i, 2 values: interval_ms, horizon_ms
-- Returns {granted, rows}: granted = k permits of every limit (0: refused, nothing
-- charged); per limit {remaining units, ms until full, ms until one permit conforms
-- (0 when this limit has room)}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local n = tonumber(ARGV[1])
local want = tonumber(ARGV[2])
local ttl = tonumber(ARGV[3])
local EPS = 0.001

local interval, horizon, tat, room = {}, {}, {}, {}
local granted = want
for i = 1, n do
  interval[i] = tonumber(ARGV[2 + 2 * i])
  horizon[i] = tonumber(ARGV[3 + 2 * i])
  local stored = redis.call('GET', KEYS[i])
  tat[i] = now
  if stored then
    tat[i] = math.max(tonumber(stored), now)
  end
  room[i] = math.floor((now + horizon[i] - tat[i]) / interval[i] + EPS)
  if room[i] < granted then granted = math.max(room[i], 0) end
end

local rows = {}
for i = 1, n do
  local after = tat[i]
  local retry = 0
  if granted > 0 then
    local from = tat[i]
    if granted > 1 then from = math.max(tat[i], now + ttl) end
    after = from + granted * interval[i]
    redis.call('SET', KEYS[i], string.format('%.3f', after), 'PX', math.ceil(after - now) + 1000)
  elseif room[i] < 1 then
    retry = math.max(1, math.ceil(tat[i] + interval[i] - horizon[i] - now))
  end
  local remaining = math.floor((now + horizon[i] - after) / interval[i] + EPS)
  rows[i] = {remaining, math.ceil(after - now), retry}
end
return {granted, rows}
