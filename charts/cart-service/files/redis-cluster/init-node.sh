# Runs in the init container before every start of a Redis Cluster node (sh, in the Redis
# image). Environment: REDIS_PASSWORD (from the Secret), POD_NAME, POD_IP, POD_DOMAIN.
set -eu
umask 077

# The default user's password and the app's command rules, as in standalone mode; the
# password never appears in an argument or in the ConfigMap.
printf 'user default on >%s %s\n' "$REDIS_PASSWORD" "$(cat /etc/redis-conf/acl-rules)" \
  > /etc/redis-acl/users.acl
# What redis.conf includes: the password replicas give their master, and the node's stable
# DNS name, recorded in every nodes.conf (the address refresh below looks peers up by it).
printf 'masterauth %s\ncluster-announce-hostname %s.%s\n' "$REDIS_PASSWORD" "$POD_NAME" "$POD_DOMAIN" \
  > /etc/redis-acl/node.conf

# Nodes find each other by the IPs in nodes.conf. One pod restarting is no problem (its
# peers learn its new IP when it calls), but after every pod restarted at once (a node
# reboot) each nodes.conf holds only addresses nobody has any more. So the peers' IPs are
# looked up again by the host names the cluster recorded, before Redis starts.
conf=/data/nodes.conf
if [ ! -s "$conf" ]; then
  echo "a new node: no $conf yet, the hook Job forms the cluster"
  exit 0
fi
if ! command -v getent >/dev/null 2>&1; then
  echo "no getent in this image: the peers' addresses in $conf are left as they are"
  exit 0
fi
hosts=$(awk '$1 != "vars" { split($2, a, ","); if (a[2] != "") print a[2] }' "$conf")
# The pods start together (podManagementPolicy Parallel): give their DNS records a moment.
tries=0
while :; do
  map="" missing=""
  for host in $hosts; do
    ip=$(getent hosts "$host" | awk '{ print $1; exit }')
    if [ -n "$ip" ]; then map="$map $host=$ip"; else missing="$missing $host"; fi
  done
  if [ -z "$missing" ] || [ "$tries" -ge 30 ]; then break; fi
  tries=$((tries + 1))
  sleep 1
done
[ -z "$missing" ] || echo "not resolved, left as they are:$missing"
awk -v map="$map" -v self="$POD_IP" '
  BEGIN { n = split(map, pairs, " "); for (i = 1; i <= n; i++) { split(pairs[i], kv, "="); ip[kv[1]] = kv[2] } }
  $1 == "vars" { print; next }
  {
    # $2 is ip:port@cport,hostname[,aux...]; IPv6 addresses are written without brackets.
    parts = split($2, a, ",")
    at = index(a[1], "@")
    addr = substr(a[1], 1, at - 1)
    match(addr, /:[0-9]+$/)
    old = substr(addr, 1, RSTART - 1)
    new = ($3 ~ /myself/) ? self : ip[a[2]]
    if (new != "" && new != old) {
      printf "node %s (%s): %s -> %s\n", $1, a[2], old, new > "/dev/stderr"
      a[1] = new substr(a[1], RSTART)
      field = a[1]
      for (i = 2; i <= parts; i++) field = field "," a[i]
      $2 = field
    }
    print
  }' "$conf" > "$conf.refreshed"
mv "$conf.refreshed" "$conf"
