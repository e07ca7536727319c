-- GCRA over every limit of one request, checked and consumed atomically in ONE call.
--
-- Why GCRA (Generic Cell Rate Algorithm, as in brandur/redis-cell): one key per limit
-- holding one number (the theoretical arrival time, TAT), exact (no window-boundary
-- double burst like fixed windows, no per-request log like sliding logs), and burst
-- is built in (the tolerance). Time comes from the Redis server (TIME), so every worker
-- and host shares one clock.
--
-- KEYS[1..n]        one key per limit (TAT in ms, string)
-- KEYS[n+1..n+m]    shadow counters, one per shadow group (INCR when the group would reject;
--                   m may be 0, then nobody is counted here)
-- KEYS[last k]      gate keys: read first; if any exists NOTHING is charged or counted
--                   and the caller decides (auth's revocation keys ride along this way,
--                   so an authenticated request costs one round trip, not two)
-- ARGV[1]           n
-- ARGV[2]           seconds a shadow counter lives
-- ARGV[3]           k, the number of gate keys
-- then per limit i, 5 values: interval_ms, horizon_ms, cost, group, write
--   group 0 = the enforced group; g >= 1 = shadow group g (counter KEYS[n+g])
--   write 0 = check only, 1 = consume if the whole group conforms, 2 = settle: add
--   cost (may be negative) unconditionally
-- Returns {gate values ('' when absent), rows}; rows is empty when a gate key exists,
-- else per limit: {conforms 0/1, remaining units, ms until full, ms until it conforms}
local gates = tonumber(ARGV[3])
local gate_values = {}
local gated = false
for j = 1, gates do
  local v = redis.call('GET', KEYS[#KEYS - gates + j])
  if v then
    gated = true
  else
    v = ''
  end
  gate_values[j] = v
end
if gated then
  return {gate_values, {}}
end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local n = tonumber(ARGV[1])
local shadow_ttl = tonumber(ARGV[2])
local EPS = 0.001

local interval, horizon, cost, group, write = {}, {}, {}, {}, {}
local base, new, ok = {}, {}, {}
local group_ok, group_writes = {}, {}

for i = 1, n do
  local a = 4 + (i - 1) * 5
  interval[i] = tonumber(ARGV[a])
  horizon[i] = tonumber(ARGV[a + 1])
  cost[i] = tonumber(ARGV[a + 2])
  group[i] = tonumber(ARGV[a + 3])
  write[i] = tonumber(ARGV[a + 4])
  local stored = redis.call('GET', KEYS[i])
  local tat = now
  if stored then
    tat = math.max(tonumber(stored), now)
  end
  base[i] = tat
  new[i] = tat + cost[i] * interval[i]
  ok[i] = write[i] == 2 or new[i] <= now + horizon[i] + EPS
  local g = group[i]
  if group_ok[g] == nil then group_ok[g] = true end
  if not ok[i] then group_ok[g] = false end
  if write[i] == 1 then group_writes[g] = true end
end

local out = {}
for i = 1, n do
  local after = base[i]
  if write[i] == 2 or (write[i] == 1 and group_ok[group[i]]) then
    after = math.max(new[i], now)
    if after > now + EPS then
      redis.call('SET', KEYS[i], string.format('%.3f', after), 'PX', math.ceil(after - now) + 1000)
    else
      redis.call('DEL', KEYS[i])
    end
  end
  local remaining = math.floor((now + horizon[i] - after) / interval[i] + EPS)
  local retry = 0
  if not ok[i] then
    retry = math.ceil(new[i] - horizon[i] - now)
  end
  out[i] = {ok[i] and 1 or 0, remaining, math.ceil(after - now), retry}
end

for g, passed in pairs(group_ok) do
  -- n + g past the shadow counters: a call over one Cluster slot's share of the keys,
  -- whose caller counts (app/ratelimit/slots.py)
  if g > 0 and not passed and group_writes[g] and n + g <= #KEYS - gates then
    local key = KEYS[n + g]
    redis.call('INCR', key)
    redis.call('EXPIRE', key, shadow_ttl)
  end
end
return {gate_values, out}
