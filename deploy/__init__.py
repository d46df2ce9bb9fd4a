"""Deployment files; tools/ holds the scripts that check and render them."""
