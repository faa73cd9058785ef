-- Acquire the lease of one role for one symbol: a new tenure with a new fencing token.
-- KEYS[1] lease key (value: holder node id), KEYS[2] fencing token counter,
-- KEYS[3] fence: the highest token any owner write of this role and symbol was made with
-- ARGV[1] node id, ARGV[2] ttl ms
-- Returns the new tenure's token, or false while another node holds the lease.
-- The token is INCRed on every acquisition, also when the caller's own node still holds the
-- lease (an earlier tenure of it that has not ended yet): that tenure's writes are refused
-- from now on, so two tenures never share a token. It is also kept above the fence: a
-- counter that went back (evicted, or lost with the last writes before a restart or a
-- failover) never hands out a token that data already carries.
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then
  return false
end
local token = redis.call('INCR', KEYS[2])
local fence = tonumber(redis.call('GET', KEYS[3]) or '0')
if token <= fence then
  token = fence + 1
  redis.call('SET', KEYS[2], token)
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return token
