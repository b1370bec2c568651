-- Marks silent edges offline (reason "stale") and forgets edges offline for long; any hub may run it.
-- Mirrors MemoryFleetStore.sweep.
-- A *brief* edge (heard from for less than stale_after, from its first message to its last: a made-up id
-- on a broker without ACL, or an edge that died at once) is not kept for forget_after: silent, it is
-- forgotten instead of marked stale, and offline it is forgotten stale_after after its last word. So a
-- flood of made-up ids cannot hold the fleet's places (FLEET_MAX_EDGES) or raise an offline alert each.
-- An edge stored before first_seen existed counts as not brief.
-- KEYS[1] index of edge ids. ARGV: now, stale_after_s, forget_after_s (0 = never), key prefix of edges
-- Returns {staled ids..., "|", forgotten ids...}
local idx = KEYS[1]
local now, stale_after, forget_after, prefix = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local staled, forgotten = {}, {}
for _, id in ipairs(redis.call('SMEMBERS', idx)) do
  local h = prefix .. 'edge:' .. id
  local cur = redis.call('HMGET', h, 'status', 'last_seen', 'status_at', 'first_seen')
  local last_seen = tonumber(cur[2]) or 0
  local status_at = tonumber(cur[3]) or 0
  local first_seen = tonumber(cur[4])
  local last_word = math.max(last_seen, status_at)
  local brief = first_seen ~= nil and last_word - first_seen < stale_after
  local forget = false
  if cur[1] == 'online' and now - last_seen > stale_after then
    if brief then
      forget = true
    else
      redis.call('HSET', h, 'status', 'offline', 'reason', 'stale', 'status_at', now)
      staled[#staled + 1] = id
    end
  elseif cur[1] ~= 'online' then
    local quiet = now - last_word
    forget = (brief and quiet > stale_after) or (forget_after > 0 and quiet > forget_after)
  end
  if forget then
    redis.call('DEL', h, prefix .. 'pending:' .. id)
    redis.call('SREM', idx, id)
    forgotten[#forgotten + 1] = id
  end
end
local out = staled
out[#out + 1] = '|'
for i = 1, #forgotten do out[#out + 1] = forgotten[i] end
return out
