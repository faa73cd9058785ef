-- Acquire (or keep) the lease of one role for one symbol.
-- KEYS[1] lease key (value: holder node id), KEYS[2] fencing token counter
-- ARGV[1] node id, ARGV[2] ttl ms
-- Returns the fencing token the caller holds, or false when another node holds the lease.
-- A fresh acquisition always INCRs the token, so every tenure has a token of its own and a
-- write carrying an older tenure's token is refused even by the same node.
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return tonumber(redis.call('GET', KEYS[2]))
end
if holder then
  return false
end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return token
