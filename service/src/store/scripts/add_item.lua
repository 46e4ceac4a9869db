-- Adds units of one product to a cart, within the caps, atomically.
-- KEYS[1]  cart hash cart:{user}
-- KEYS[2]  (optional) the idempotency record this request claimed
-- ARGV     product, quantity to add, max quantity per line, max distinct items,
--          cart ttl in seconds (0: never expires), claim token, record ttl in seconds
-- Returns  {1, new_total} added | {-1, current} line cap | {-2, items} item cap |
--          {-3, 0} the idempotency claim is no longer ours (nothing changed)
local cart, product = KEYS[1], ARGV[1]
local add, max_quantity = tonumber(ARGV[2]), tonumber(ARGV[3])
local max_items, ttl = tonumber(ARGV[4]), tonumber(ARGV[5])
local record = KEYS[2]

if record and redis.call('HGET', record, 'token') ~= ARGV[6] then
  return {-3, 0}
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

if code == 1 then
  if ttl > 0 then redis.call('EXPIRE', cart, ttl) else redis.call('PERSIST', cart) end
end

if record then
  if code == 1 then
    redis.call('HSET', record, 'state', 'done', 'status', 200, 'quantity', total)
    redis.call('HDEL', record, 'token')
    redis.call('EXPIRE', record, tonumber(ARGV[7]))
  else
    -- Nothing changed, so nothing is remembered: a retry is evaluated afresh.
    redis.call('DEL', record)
  end
end
return {code, value}
