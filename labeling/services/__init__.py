"""Every write of the labeling app and every rule it enforces. Views and the API call these."""
