-- Acquire the lease of one role for one symbol: a new tenure with a new fencing token.
-- KEYS[1] lease key (value: holder node id), KEYS[2] fencing token counter,
-- KEYS[3] fence: the highest token any owner write of this role and symbol was made with,
-- KEYS[4] successor: the node that has said it is ready to take over from the holder
-- ARGV[1] node id, ARGV[2] ttl ms, ARGV[3] '1' when the caller is ready to take over (it has
-- loaded the symbol's state and folded ahead), ARGV[4] channel announcing a ready successor
-- Returns {token, 0} when acquired, {0, ms the holder's lease has left} while another node
-- holds it.
-- The token is INCRed on every acquisition, also when the caller's own node still holds the
-- lease (an earlier tenure of it that has not ended yet): that tenure's writes are refused
-- from now on, so two tenures never share a token. It is also kept above the fence: a
-- counter that went back (evicted, or lost with the last writes before a restart or a
-- failover) never hands out a token that data already carries.
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then
  if ARGV[3] == '1' then
    -- announced once, when this node becomes the successor; kept while it goes on waiting
    if redis.call('GET', KEYS[4]) ~= ARGV[1] then
      redis.call('PUBLISH', ARGV[4], KEYS[1])
    end
    redis.call('SET', KEYS[4], ARGV[1], 'PX', ARGV[2])
  end
  local left = redis.call('PTTL', KEYS[1])
  if left < 0 then
    left = tonumber(ARGV[2])
  end
  return {0, left}
end
local token = redis.call('INCR', KEYS[2])
local fence = tonumber(redis.call('GET', KEYS[3]) or '0')
if token <= fence then
  token = fence + 1
  redis.call('SET', KEYS[2], token)
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
if redis.call('GET', KEYS[4]) == ARGV[1] then
  redis.call('DEL', KEYS[4])
end
return {token, 0}
