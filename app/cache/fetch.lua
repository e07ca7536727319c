-- Read a cache entry if it is current, else (optionally) take the single-flight lock.
-- One round trip for a hit, and for the miss that elects the one computing process.
--
-- KEYS[1] entry ("<tag versions>\n<payload>"), KEYS[2] lock, KEYS[3..] tag version counters
-- ARGV[1] lock token, ARGV[2] lock TTL ms, ARGV[3] "1" to try the lock on a miss
-- Returns {state, payload, versions}: state 1 = hit, 2 = lock taken, 0 = miss, locked
-- elsewhere. `versions` are read BEFORE computing, so a write that invalidates a tag
-- while the value is being computed makes the stored entry stale at once.
local parts = {}
for i = 3, #KEYS do
  parts[#parts + 1] = redis.call('GET', KEYS[i]) or '0'
end
local versions = table.concat(parts, ',')
local entry = redis.call('GET', KEYS[1])
if entry then
  local nl = string.find(entry, '\n', 1, true)
  if nl and string.sub(entry, 1, nl - 1) == versions then
    return {1, string.sub(entry, nl + 1), versions}
  end
end
if ARGV[3] == '1' and redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {2, '', versions}
end
return {0, '', versions}
