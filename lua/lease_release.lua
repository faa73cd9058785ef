-- Give a lease up, only if the caller still holds it under the same token.
-- KEYS[1] lease key, KEYS[2] fencing token counter (KEYS[3], the fence, is not needed here)
-- ARGV[1] node id, ARGV[2] token
-- Returns 1 when released, 0 when it was not the caller's any more.
if redis.call('GET', KEYS[1]) == ARGV[1] and redis.call('GET', KEYS[2]) == ARGV[2] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
