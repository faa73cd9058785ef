-- Write a symbol owner's keys (report, heavy section, checkpoint) in one fenced step.
-- KEYS[1] lease key, KEYS[2] fencing token counter, KEYS[3] fence, KEYS[4..] keys to write
-- ARGV[1] node id, ARGV[2] token, then per written key a pair (ttl ms, value);
-- ttl "0" stores without expiry.
-- A key with a ttl gets it on first write and keeps it while more than half remains
-- (SET KEEPTTL): a live symbol's report never lapses, a dead one's is gone within the ttl.
-- Returns the number of keys written; error STALE when the caller is not the owner, or its
-- token is below one these keys were already written with.
if redis.call('GET', KEYS[1]) ~= ARGV[1] or redis.call('GET', KEYS[2]) ~= ARGV[2]
    or tonumber(redis.call('GET', KEYS[3]) or '0') > tonumber(ARGV[2]) then
  return redis.error_reply('STALE fencing token ' .. ARGV[2] .. ' for ' .. KEYS[1])
end
redis.call('SET', KEYS[3], ARGV[2])
for i = 4, #KEYS do
  local ttl = tonumber(ARGV[2 * i - 5])
  local value = ARGV[2 * i - 4]
  if ttl == 0 then
    redis.call('SET', KEYS[i], value)
  elseif redis.call('PTTL', KEYS[i]) > ttl / 2 then
    redis.call('SET', KEYS[i], value, 'KEEPTTL')
  else
    redis.call('SET', KEYS[i], value, 'PX', ttl)
  end
end
return #KEYS - 3
