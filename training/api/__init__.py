"""REST API of training (DRF), mounted under /api/ by training/api_urls.py."""
