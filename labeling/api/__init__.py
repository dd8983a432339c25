"""REST API views (DRF): thin APIViews over labeling.services, one module per resource."""
