-- One hub's batch of one edge's messages, applied atomically (several hubs flush the same edge).
-- Mirrors hub/fleet_logic.py apply_seqs(); tests run the memory and Redis stores through the same cases.
-- KEYS[1] edge hash, KEYS[2] pending seqs (zset), KEYS[3] index of edge ids
-- ARGV: edge_id, now, grace_s, session, snap_seq, snapshot_json, events_n, last_event_json,
--       seqs (comma-separated: one argument to encode and parse, not one per message)
-- Returns {duplicates, lost, reset, accepted seqs comma-separated}
-- In-order seqs (the common case) advance the watermark directly; only out-of-order ones touch the zset.
local h, pend, idx = KEYS[1], KEYS[2], KEYS[3]
local edge_id, now, grace = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local session, snap_seq, snapshot = ARGV[4], tonumber(ARGV[5]), ARGV[6]
local events_n, last_event = tonumber(ARGV[7]), ARGV[8]
local seqs = {}
for s in string.gmatch(ARGV[9] or '', '%d+') do seqs[#seqs + 1] = tonumber(s) end
table.sort(seqs)

redis.call('SADD', idx, edge_id)
redis.call('HSETNX', h, 'first_seen', now)  -- how long the edge has been around (fleet_sweep.lua)
local cur = redis.call('HMGET', h, 'session', 'seq_lo', 'seq_hi', 'hole_at', 'snap_seq', 'status', 'reason', 'last_seen')
local accepted, dups, lost, reset = {}, 0, 0, 0

if #seqs > 0 then
  local lo, hi, hole_at = tonumber(cur[2]), tonumber(cur[3]) or 0, tonumber(cur[4]) or 0
  if cur[1] ~= session or lo == nil then
    -- first message of this session seen before its birth: start just below the lowest seq
    lo, hi, hole_at, reset = seqs[1] - 1, seqs[1] - 1, 0, 1
    redis.call('DEL', pend)
    redis.call('HSET', h, 'session', session, 'snap_seq', 0, 'conn', 0)
    cur[5] = '0'
  end
  local pending = redis.call('ZCARD', pend)
  local advanced = false
  for _, s in ipairs(seqs) do
    if s <= lo then
      dups = dups + 1
    elseif pending == 0 and s == lo + 1 then
      lo = s
      advanced = true
      accepted[#accepted + 1] = s
      if s > hi then hi = s end
    elseif redis.call('ZSCORE', pend, s) then
      dups = dups + 1
    else
      redis.call('ZADD', pend, s, s)
      pending = pending + 1
      accepted[#accepted + 1] = s
      if s > hi then hi = s end
    end
  end
  local function advance()
    local moved = false
    while pending > 0 and redis.call('ZREM', pend, lo + 1) == 1 do
      lo = lo + 1
      pending = pending - 1
      moved = true
    end
    return moved
  end
  advanced = advance() or advanced
  if lo >= hi then
    hole_at = 0
  elseif hole_at == 0 or advanced then
    hole_at = now
  elseif now - hole_at >= grace then
    local nxt = tonumber(redis.call('ZRANGE', pend, 0, 0)[1])
    lost = nxt - lo - 1
    lo = nxt - 1
    advance()
    if lo < hi then hole_at = now else hole_at = 0 end
  end
  redis.call('HSET', h, 'seq_lo', lo, 'seq_hi', hi, 'hole_at', hole_at)
  if #accepted > 0 then redis.call('HINCRBY', h, 'msgs', #accepted) end
  if dups > 0 then redis.call('HINCRBY', h, 'dups', dups) end
  if lost > 0 then redis.call('HINCRBY', h, 'gaps', lost) end
  if snap_seq > (tonumber(cur[5]) or 0) and snapshot ~= '' then
    redis.call('HSET', h, 'snap_seq', snap_seq, 'snapshot', snapshot)
  end
  -- a silent edge marked stale is back; an edge never born (hub started late) is evidently up
  if cur[6] == false or (cur[6] == 'offline' and cur[7] == 'stale' and cur[1] == session) then
    redis.call('HSET', h, 'status', 'online', 'reason', 'seen', 'status_at', now, 'online_since', now)
  end
end
if events_n > 0 then
  redis.call('HINCRBY', h, 'events', events_n)
  if last_event ~= '' then redis.call('HSET', h, 'last_event', last_event) end
end
if (tonumber(cur[8]) or 0) < now then redis.call('HSET', h, 'last_seen', now) end
return {dups, lost, reset, table.concat(accepted, ',')}
