"""Training services: every write and every rule about iterations lives in these modules."""
