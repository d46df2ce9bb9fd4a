"""The admin web console: static HTML, CSS and JavaScript served by the gateway at /admin/ui.

The console is a client of the documented admin API and nothing else; it has no server-side
state and no build step (plain ES modules committed under `static/`).
"""
