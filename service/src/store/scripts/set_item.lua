-- Sets one cart line to an exact quantity; 0 removes the line.
-- KEYS[1]  cart hash cart:{user}
-- ARGV     product, quantity, max distinct items, cart ttl in seconds (0: never expires)
-- Returns  the line's quantity, or -2 when a new line would pass the item cap (nothing changed)
local cart, product = KEYS[1], ARGV[1]
local quantity, max_items, ttl = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])

if quantity == 0 then
  redis.call('HDEL', cart, product)
elseif redis.call('HEXISTS', cart, product) == 0 and redis.call('HLEN', cart) >= max_items then
  return -2
else
  redis.call('HSET', cart, product, quantity)
end
if ttl > 0 then redis.call('EXPIRE', cart, ttl) else redis.call('PERSIST', cart) end
return quantity
