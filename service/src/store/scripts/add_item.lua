-- Adds units of one product to a cart, within the caps, atomically. With an
-- Idempotency-Key, looking the key up, the add and storing its result are this one step, so
-- no key is ever held by a request that has not finished: a retry after any failure,
-- even an ambiguous timeout, finds either the stored result or nothing.
-- KEYS[1]  cart hash cart:{user}
-- KEYS[2]  (optional) idempotency record idem:{user}:<key> (a hash: fp, state, status, quantity)
-- ARGV     product, quantity to add, max quantity per line, max distinct items,
--          cart ttl in seconds (0: never expires), request fingerprint, record ttl in seconds
-- Returns  {1, new_total} added | {-1, current} line cap | {-2, items} item cap |
--          {2, status, quantity} the key's request already ran: replay it |
--          {-4, 0} the key was used with another request (nothing changed)
local cart, product = KEYS[1], ARGV[1]
local add, max_quantity = tonumber(ARGV[2]), tonumber(ARGV[3])
local max_items, ttl = tonumber(ARGV[4]), tonumber(ARGV[5])
local record, fingerprint = KEYS[2], ARGV[6]

local held = false
if record then
  local stored = redis.call('HMGET', record, 'fp', 'state', 'status', 'quantity')
  if stored[1] then
    if stored[1] ~= fingerprint then return {-4, 0} end
    if stored[2] == 'done' then return {2, tonumber(stored[3]), tonumber(stored[4])} end
    -- A pending claim, left by a version that claimed keys in a step of its own. It is
    -- taken over: without its token that request's add changes nothing.
    held = true
  end
end

-- HINCRBY first: most adds pass both caps, and undoing inside the script is invisible to
-- everyone else, since a script runs atomically. This is one call fewer than HGET + HSET.
local total = redis.call('HINCRBY', cart, product, add)
local code, value = 1, total
if total > max_quantity then
  code, value = -1, total - add
  if value == 0 then redis.call('HDEL', cart, product) else redis.call('HINCRBY', cart, product, -add) end
elseif total == add then
  local items = redis.call('HLEN', cart)
  if items > max_items then
    code, value = -2, items - 1
    redis.call('HDEL', cart, product)
  end
end

-- A rejected add changed nothing, so nothing is remembered: a retry is evaluated afresh.
if code == 1 then
  if ttl > 0 then redis.call('EXPIRE', cart, ttl) else redis.call('PERSIST', cart) end
  if record then
    -- 'state' keeps the record readable by the version that claimed keys separately.
    redis.call('HSET', record, 'fp', fingerprint, 'state', 'done', 'status', 200, 'quantity', total)
    if held then redis.call('HDEL', record, 'token') end
    redis.call('EXPIRE', record, tonumber(ARGV[7]))
  end
end
return {code, value}
