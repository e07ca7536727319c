"""The hot path's Redis: one node (REDIS_URL, single or Sentinel) or a Redis Cluster.

`client.py` builds the client the rate limiter, the token budgets, the revocation
denylist and the response cache share (a `redis.cluster.RedisCluster` when
REDIS_CLUSTER_NODES is set); `slots.py` names keys with hash tags so every script's keys
share one slot (one EVALSHA on one node). docs/operations.md, "Redis topologies", says
which data lives where.
"""
