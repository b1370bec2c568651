-- GCRA rate limit, atomically, for one bucket. Mirrors hub/gcra.py gcra() line for line.
-- KEYS[1]  the bucket key (stores the theoretical arrival time, integer microseconds)
-- ARGV     now_us, cost, interval_us, capacity   (the clock is passed in: no TIME, so the script is
--          deterministic and replicates safely; hubs need NTP-synchronised clocks)
-- Returns  {allowed 0/1, new_tat_us, remaining, retry_after_us (-1 = never), reset_us}
local now = tonumber(ARGV[1])
local cost = tonumber(ARGV[2])
local interval = tonumber(ARGV[3])
local capacity = tonumber(ARGV[4])

local stored = redis.call('GET', KEYS[1])
local tat = now
if stored then
  tat = tonumber(stored)
  if tat < now then tat = now end
end
local tau = capacity * interval
local new_tat = tat + cost * interval
local allow_at = new_tat - tau

if cost > capacity then
  return {0, tat, math.floor((now + tau - tat) / interval), -1, tat - now}
end
if allow_at > now then
  return {0, tat, math.floor((now + tau - tat) / interval), allow_at - now, tat - now}
end
-- string.format('%d'): tostring() would print a 16-digit microsecond count as 1.76e+15 and lose it.
-- The key expires when the bucket is full again; a missing key means exactly that.
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.max(1, math.ceil((new_tat - now) / 1000)))
return {1, new_tat, math.floor((now + tau - new_tat) / interval), 0, new_tat - now}
