-- Take back a node's word that it is ready to take a lease over (it stopped waiting), unless
-- another node's word has replaced it: a holder must not hand off to a successor that left.
-- KEYS[1] successor key; ARGV[1] node id
-- Returns 1 when withdrawn, 0 when the word there was not the caller's.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
