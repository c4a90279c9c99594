"""One conformance suite for Kong's Admin API and balancer behaviour, run against real Kong and the lab's simulator."""
