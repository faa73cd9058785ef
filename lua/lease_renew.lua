-- Extend a lease the caller still holds under the same token.
-- KEYS[1] lease key, KEYS[2] fencing token counter (KEYS[3], the fence, is not needed here)
-- ARGV[1] node id, ARGV[2] token, ARGV[3] ttl ms
-- Returns 1 when renewed, 0 when the lease is gone or belongs to another tenure.
if redis.call('GET', KEYS[1]) == ARGV[1] and redis.call('GET', KEYS[2]) == ARGV[2] then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return 1
end
return 0
