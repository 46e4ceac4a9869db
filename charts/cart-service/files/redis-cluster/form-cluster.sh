# The post-install and post-upgrade hook Job (sh, in the Redis image): forms the Redis
# Cluster once and leaves a formed one alone, so it is safe on every upgrade.
# Environment: NODES (every node's host name, in ordinal order), REDIS_PORT,
# REPLICAS (per master), WAIT_SECONDS, REDISCLI_AUTH (the password, read by redis-cli).
set -eu
expected=$(($(echo $NODES | wc -w)))

cli() {
  host=$1
  shift
  redis-cli --no-auth-warning -h "$host" -p "$REDIS_PORT" "$@"
}

# One field of a node's CLUSTER INFO, such as cluster_known_nodes.
field() {
  cli "$1" cluster info | tr -d '\r' | sed -n "s/^$2://p"
}

# 1. Every node answers (their DNS names exist before they are ready: the headless
#    Service publishes not-ready addresses).
deadline=$(($(date +%s) + WAIT_SECONDS))
for host in $NODES; do
  until [ "$(cli "$host" ping 2>/dev/null)" = PONG ]; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
      echo "$host:$REDIS_PORT does not answer PING after ${WAIT_SECONDS}s"
      exit 1
    fi
    sleep 2
  done
done
echo "all $expected nodes answer"

# 2. Where each node stands: new (it knows only itself and serves no slot), or a member.
new="" members="" formed=yes
for host in $NODES; do
  known=$(field "$host" cluster_known_nodes)
  slots=$(field "$host" cluster_slots_assigned)
  if [ "$known" = 1 ] && [ "$slots" = 0 ]; then
    new="$new $host"
  else
    members="$members $host"
  fi
  if [ "$known" != "$expected" ] || [ "$slots" != 16384 ]; then formed=no; fi
done

# 3. Formed already (an upgrade, or a hook run again): leave it alone.
if [ "$formed" = yes ]; then
  first=${NODES%% *}
  echo "the cluster is formed already: $expected nodes, all 16384 slots, cluster_state:$(field "$first" cluster_state); nothing to do"
  exit 0
fi

# 4. Some nodes belong to a cluster and others do not, or it is not the size the values
#    ask for: a changed redis.cluster.masters or replicasPerMaster meeting a formed cluster
#    (the StatefulSet has added empty pods), or a formation that stopped half-way. Resharding
#    moves live data, so it is left to a person rather than done by an upgrade.
if [ -n "$members" ]; then
  first=${members# }
  first=${first%% *}
  echo "refusing to touch the Redis Cluster: $first knows $(field "$first" cluster_known_nodes) nodes and $(field "$first" cluster_slots_assigned) of 16384 slots are assigned, but the values ask for $expected nodes."
  if [ -n "$new" ]; then
    echo "Nodes not in it:$new"
    echo "To grow it, add each with 'redis-cli --cluster add-node NEW:$REDIS_PORT $first:$REDIS_PORT' (with --cluster-slave for a replica),"
    echo "then 'redis-cli --cluster rebalance $first:$REDIS_PORT --cluster-use-empty-masters'; or set the values back."
  fi
  echo "'redis-cli --cluster check $first:$REDIS_PORT' shows where it stands."
  exit 1
fi

# 5. Every node is new: form the cluster.
addresses=""
for host in $NODES; do addresses="$addresses $host:$REDIS_PORT"; done
echo "forming a cluster of $expected nodes, $REPLICAS replica(s) per master"
# shellcheck disable=SC2086 # one word per node
redis-cli --no-auth-warning --cluster create $addresses --cluster-replicas "$REPLICAS" --cluster-yes
for host in $NODES; do
  until [ "$(field "$host" cluster_state)" = ok ]; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
      echo "$host does not report cluster_state:ok after ${WAIT_SECONDS}s"
      exit 1
    fi
    sleep 1
  done
done
echo "the cluster is formed: every node reports cluster_state:ok"
