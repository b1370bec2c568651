-- Marks silent edges offline (reason "stale") and forgets edges offline for long; any hub may run it.
-- KEYS[1] index of edge ids. ARGV: now, stale_after_s, forget_after_s (0 = never), key prefix of edges
-- Returns {staled ids..., "|", forgotten ids...}
local idx = KEYS[1]
local now, stale_after, forget_after, prefix = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local staled, forgotten = {}, {}
for _, id in ipairs(redis.call('SMEMBERS', idx)) do
  local h = prefix .. 'edge:' .. id
  local cur = redis.call('HMGET', h, 'status', 'last_seen', 'status_at')
  local last_seen = tonumber(cur[2]) or 0
  local status_at = tonumber(cur[3]) or 0
  if cur[1] == 'online' and now - last_seen > stale_after then
    redis.call('HSET', h, 'status', 'offline', 'reason', 'stale', 'status_at', now)
    staled[#staled + 1] = id
  elseif cur[1] ~= 'online' and forget_after > 0 and now - math.max(last_seen, status_at) > forget_after then
    redis.call('DEL', h, prefix .. 'pending:' .. id)
    redis.call('SREM', idx, id)
    forgotten[#forgotten + 1] = id
  end
end
local out = staled
out[#out + 1] = '|'
for i = 1, #forgotten do out[#out + 1] = forgotten[i] end
return out
