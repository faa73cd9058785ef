-- Append a batch of events to a symbol's stream, fenced by the ingest lease.
-- KEYS[1] lease key, KEYS[2] fencing token counter, KEYS[3] fence, KEYS[4] stream
-- ARGV[1] node id, ARGV[2] token, ARGV[3] entry field name,
-- ARGV[4] retention MINID (ms; "0" keeps everything), ARGV[5..] encoded events
-- Returns the id of the last entry appended; error STALE when the caller is not the owner,
-- or its token is below one the stream was already written with.
if redis.call('GET', KEYS[1]) ~= ARGV[1] or redis.call('GET', KEYS[2]) ~= ARGV[2]
    or tonumber(redis.call('GET', KEYS[3]) or '0') > tonumber(ARGV[2]) then
  return redis.error_reply('STALE fencing token ' .. ARGV[2] .. ' for ' .. KEYS[4])
end
redis.call('SET', KEYS[3], ARGV[2])
local last_id = false
for i = 5, #ARGV do
  last_id = redis.call('XADD', KEYS[4], '*', ARGV[3], ARGV[i])
end
if ARGV[4] ~= '0' then
  redis.call('XTRIM', KEYS[4], 'MINID', '~', ARGV[4])
end
return last_id
