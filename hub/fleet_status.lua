-- An edge's birth or offline status, applied atomically and idempotently (every hub receives every
-- status message: retained ones again after a restart). Mirrors MemoryFleetStore.apply_status.
-- KEYS[1] edge hash, KEYS[2] pending seqs (zset), KEYS[3] index of edge ids
-- ARGV: edge_id, now, online(1|0), session, reason, birth_seq, metrics_seq, version, model, capabilities_json,
--       metrics_interval_s, conn (the edge's connection number: orders a Will against births)
-- Returns 1 when applied, 0 when ignored (an already-applied birth, an old session's Will).
local h, pend, idx = KEYS[1], KEYS[2], KEYS[3]
local edge_id, now, online, session, reason = ARGV[1], tonumber(ARGV[2]), ARGV[3] == '1', ARGV[4], ARGV[5]
local conn = tonumber(ARGV[12])
local cur = redis.call('HMGET', h, 'session', 'birth_seq', 'status', 'conn')
-- when the fleet first heard of the edge: how long it has been around (fleet_sweep.lua's "brief")
redis.call('HSETNX', h, 'first_seen', now)
local cur_conn = tonumber(cur[4]) or 0
if online then
  local birth_seq = tonumber(ARGV[6])
  if cur[1] == session and (cur_conn > conn or (cur_conn == conn and (tonumber(cur[2]) or 0) >= birth_seq)) then
    return 0
  end
  redis.call('SADD', idx, edge_id)
  if cur[1] ~= session then
    -- a new process: its metrics numbering starts after the seq its birth announces
    redis.call('DEL', pend)
    redis.call('HSET', h, 'session', session, 'seq_lo', ARGV[7], 'seq_hi', ARGV[7], 'hole_at', 0, 'snap_seq', 0)
  end
  if cur[3] ~= 'online' then redis.call('HSET', h, 'online_since', now) end
  redis.call('HSET', h, 'status', 'online', 'reason', reason, 'birth_seq', birth_seq, 'conn', conn, 'version', ARGV[8],
    'model', ARGV[9], 'capabilities', ARGV[10], 'metrics_interval_s', ARGV[11], 'status_at', now, 'last_seen', now)
  return 1
end
if cur[1] and cur[1] ~= session then return 0 end
if cur[3] == 'offline' or conn < cur_conn then return 0 end
redis.call('SADD', idx, edge_id)
redis.call('HSET', h, 'status', 'offline', 'reason', reason, 'status_at', now, 'session', session)
return 1
