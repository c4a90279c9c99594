"""A Kong 3.9-compatible gateway simulator for the lab (Admin API, proxy, health checks, metrics, cluster)."""
