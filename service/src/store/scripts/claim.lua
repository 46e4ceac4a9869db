-- Claims an Idempotency-Key for one request, or reports what the key already holds.
-- KEYS[1]  idempotency record idem:{user}:<key> (a hash: fp, state, token, status, quantity)
-- ARGV     request fingerprint, claim token, claim ttl in milliseconds
-- Returns  {'claimed'} | {'mismatch'} | {'in_flight'} | {'done', status, quantity}
local record = redis.call('HMGET', KEYS[1], 'fp', 'state', 'status', 'quantity')
if not record[1] then
  redis.call('HSET', KEYS[1], 'fp', ARGV[1], 'state', 'pending', 'token', ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return {'claimed'}
end
if record[1] ~= ARGV[1] then
  return {'mismatch'}
end
if record[2] ~= 'done' then
  return {'in_flight'}
end
return {'done', record[3], record[4]}
