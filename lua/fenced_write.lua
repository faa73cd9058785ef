-- Write a symbol owner's keys (report, heavy section, history, checkpoint, a kind's own
-- projections) in one fenced step.
-- KEYS[1] lease key, KEYS[2] fencing token counter, KEYS[3] fence, KEYS[4..] keys to write
-- ARGV[1] node id, ARGV[2] token, then six arguments per written key:
--   'S', ttl ms, value, '', '', ''          string: SET (ttl 0: no expiry). A ttl is set on
--                                           first write and kept (SET KEEPTTL) while more
--                                           than half remains: a live symbol's report never
--                                           lapses, a dead one's is gone within the ttl.
--   'Z', ttl ms, member, score, from, keep  sorted-set series: members scored from `from`
--                                           to `score` are replaced by this one (the bar or
--                                           second it revises), then only the newest `keep`
--                                           are kept (0: all); ttl re-armed if > 0.
-- Returns the number of keys written; error STALE when the caller is not the owner, or its
-- token is below one these keys were already written with.
if redis.call('GET', KEYS[1]) ~= ARGV[1] or redis.call('GET', KEYS[2]) ~= ARGV[2]
    or tonumber(redis.call('GET', KEYS[3]) or '0') > tonumber(ARGV[2]) then
  return redis.error_reply('STALE fencing token ' .. ARGV[2] .. ' for ' .. KEYS[1])
end
redis.call('SET', KEYS[3], ARGV[2])
for i = 4, #KEYS do
  local at = 6 * (i - 4) + 3
  local op, ttl, value = ARGV[at], tonumber(ARGV[at + 1]), ARGV[at + 2]
  local key = KEYS[i]
  if op == 'S' then
    if ttl == 0 then
      redis.call('SET', key, value)
    elseif redis.call('PTTL', key) > ttl / 2 then
      redis.call('SET', key, value, 'KEEPTTL')
    else
      redis.call('SET', key, value, 'PX', ttl)
    end
  elseif op == 'Z' then
    redis.call('ZREMRANGEBYSCORE', key, ARGV[at + 4], ARGV[at + 3])
    redis.call('ZADD', key, ARGV[at + 3], value)
    local keep = tonumber(ARGV[at + 5])
    if keep > 0 then
      redis.call('ZREMRANGEBYRANK', key, 0, -keep - 1)
    end
    if ttl > 0 then
      redis.call('PEXPIRE', key, ttl)
    end
  else
    return redis.error_reply('unknown write op ' .. tostring(op) .. ' for ' .. key)
  end
end
return #KEYS - 3
