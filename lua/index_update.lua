-- Record a symbol's last publish in the global index and its overview row, refusing
-- writers of an older tenure, and announce the new report.
-- The index spans all symbols, so it cannot share a slot with a symbol's lease; instead it
-- keeps the highest token each symbol was written with and refuses any lower one.
-- KEYS[1] index zset, KEYS[2] hash symbol -> token, KEYS[3] hash symbol -> overview row
-- ARGV[1] symbol, ARGV[2] token, ARGV[3] updatedAt ms, ARGV[4] overview row ('' for none),
-- ARGV[5] channel announcing the update
-- Returns 1 when recorded; error STALE for a token below the recorded one.
local seen = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
local token = tonumber(ARGV[2])
if token < seen then
  return redis.error_reply('STALE fencing token ' .. ARGV[2] .. ' for index of ' .. ARGV[1])
end
if token > seen then
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
if ARGV[4] ~= '' then
  redis.call('HSET', KEYS[3], ARGV[1], ARGV[4])
end
redis.call('PUBLISH', ARGV[5], ARGV[1])
return 1
