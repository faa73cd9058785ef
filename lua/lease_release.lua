-- Give a lease up, only if the caller still holds it under the same token, and say so on a
-- channel: nodes waiting for it acquire at once instead of at their next poll.
-- KEYS[1] lease key, KEYS[2] fencing token counter (KEYS[3], the fence, is not needed here)
-- ARGV[1] node id, ARGV[2] token, ARGV[3] channel announcing released leases
-- Returns 1 when released, 0 when it was not the caller's any more.
if redis.call('GET', KEYS[1]) == ARGV[1] and redis.call('GET', KEYS[2]) == ARGV[2] then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', ARGV[3], KEYS[1])
  return 1
end
return 0
