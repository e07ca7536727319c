-- Store a computed entry (when ARGV[2] is not empty) and release the lock we hold.
-- KEYS[1] entry, KEYS[2] lock; ARGV[1] lock token, ARGV[2] entry value, ARGV[3] TTL ms
if ARGV[2] ~= '' then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
end
-- Only our own lock: if it expired and another process took it, leave theirs alone.
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('DEL', KEYS[2])
end
return 1
